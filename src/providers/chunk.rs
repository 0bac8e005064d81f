//! Building OpenAI response payloads for adapters that translate from another format.

use crate::wire::Usage;
use bytes::Bytes;
use serde_json::{json, Value};

pub use crate::clock::now_secs as now;

/// Writes `chat.completion.chunk` payloads that share one id, creation time and model, as
/// OpenAI's own streams do.
#[derive(Debug, Clone)]
pub struct ChunkWriter {
    pub id: String,
    pub created: u64,
    pub model: String,
}

impl ChunkWriter {
    pub fn new(id: String, model: String) -> Self {
        ChunkWriter {
            id,
            created: now(),
            model,
        }
    }

    /// One choice's delta, with its finish reason when it is the last.
    pub fn delta(&self, index: u64, delta: Value, finish_reason: Option<&str>) -> Bytes {
        self.payload(
            json!([{
                "index": index,
                "delta": delta,
                "logprobs": null,
                "finish_reason": finish_reason,
            }]),
            None,
        )
    }

    /// The usage-only chunk OpenAI sends last when `stream_options.include_usage` is set.
    pub fn usage(&self, usage: Usage) -> Bytes {
        self.payload(json!([]), Some(usage))
    }

    fn payload(&self, choices: Value, usage: Option<Usage>) -> Bytes {
        let mut v = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        });
        if let Some(usage) = usage {
            v["usage"] = json!(usage);
        }
        Bytes::from(v.to_string())
    }
}

pub fn usage(prompt: u64, completion: u64) -> Usage {
    Usage::new(prompt, completion)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usage_chunk_serialises_the_prompt_cache_details() {
        let w = ChunkWriter::new("c1".into(), "m".into());
        let chunk: Value =
            serde_json::from_slice(&w.usage(Usage::new(10, 2).with_cache(6, 3))).unwrap();
        assert_eq!(chunk["choices"], json!([]));
        assert_eq!(
            chunk["usage"],
            json!({"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12,
                   "prompt_tokens_details": {"cached_tokens": 6, "cache_write_tokens": 3}})
        );
        // Without caching, the usage is OpenAI's plain three counts.
        let chunk: Value = serde_json::from_slice(&w.usage(Usage::new(10, 2))).unwrap();
        assert_eq!(
            chunk["usage"],
            json!({"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12})
        );
    }
}
