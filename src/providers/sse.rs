//! An incremental Server-Sent Events decoder.
//!
//! Network chunks split events anywhere; the decoder keeps the unfinished tail and hands out
//! whole events as soon as their blank line arrives. A single-line `data:` payload is sliced
//! out of the receive buffer without copying.

use bytes::{Bytes, BytesMut};

/// One decoded event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    /// The `event:` field, when the server named the event.
    pub event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: Bytes,
}

/// The largest event accepted; a server sending more without a line break is broken.
const MAX_PENDING: usize = 16 * 1024 * 1024;

/// Why the decoder refused a chunk: the stream cannot be an event stream any more.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("an event stream line exceeded {limit} bytes")]
    LineTooLong { limit: usize },
}

#[derive(Default)]
pub struct SseDecoder {
    buf: BytesMut,
    /// Data of the event being assembled; `None` until its first `data:` line.
    data: Option<Bytes>,
    /// Extra data lines beyond the first, rare in practice.
    more: Vec<u8>,
    event: Option<String>,
}

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, chunk: &[u8]) -> Result<(), SseError> {
        if self.buf.len() + chunk.len() > MAX_PENDING {
            return Err(SseError::LineTooLong { limit: MAX_PENDING });
        }
        self.buf.extend_from_slice(chunk);
        Ok(())
    }

    /// The next complete event in what has been pushed, if any.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        while let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
            let mut line = self.buf.split_to(nl + 1).freeze();
            line.truncate(nl);
            if line.last() == Some(&b'\r') {
                line.truncate(line.len() - 1);
            }
            if line.is_empty() {
                if let Some(event) = self.dispatch() {
                    return Some(event);
                }
                continue;
            }
            self.field(line);
        }
        None
    }

    /// At the end of the input: the last event if the server did not end it with a blank line.
    pub fn finish(&mut self) -> Option<SseEvent> {
        if !self.buf.is_empty() {
            let mut line = self.buf.split().freeze();
            if line.last() == Some(&b'\r') {
                line.truncate(line.len() - 1);
            }
            self.field(line);
        }
        self.dispatch()
    }

    fn field(&mut self, line: Bytes) {
        if line.first() == Some(&b':') {
            return; // a comment, often a keep-alive
        }
        let colon = line.iter().position(|&b| b == b':');
        let (name, value) = match colon {
            Some(i) => {
                let mut value = line.slice(i + 1..);
                if value.first() == Some(&b' ') {
                    value = value.slice(1..);
                }
                (line.slice(..i), value)
            }
            None => (line.clone(), Bytes::new()),
        };
        match name.as_ref() {
            b"data" => match &self.data {
                None => self.data = Some(value),
                Some(_) => {
                    self.more.push(b'\n');
                    self.more.extend_from_slice(&value);
                }
            },
            b"event" => self.event = Some(String::from_utf8_lossy(&value).into_owned()),
            _ => {} // id:, retry: and unknown fields do not matter to a proxy
        }
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        let first = self.data.take()?;
        let data = if self.more.is_empty() {
            first
        } else {
            let mut joined = Vec::with_capacity(first.len() + self.more.len());
            joined.extend_from_slice(&first);
            joined.append(&mut self.more);
            Bytes::from(joined)
        };
        Some(SseEvent { event, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut d = SseDecoder::new();
        let mut out = Vec::new();
        for c in chunks {
            d.push(c).unwrap();
            while let Some(e) = d.next_event() {
                out.push(e);
            }
        }
        out.extend(d.finish());
        out
    }

    #[test]
    fn events_split_across_chunks() {
        let events = decode_all(&[b"data: {\"a\"", b":1}\n", b"\ndata: [DONE]\n\n"]);
        assert_eq!(events.len(), 2);
        assert_eq!(&events[0].data[..], b"{\"a\":1}");
        assert_eq!(&events[1].data[..], b"[DONE]");
    }

    #[test]
    fn crlf_comments_names_and_multiline_data() {
        let events =
            decode_all(&[b": ping\r\n\r\nevent: message_start\r\ndata: a\r\ndata: b\r\n\r\n"]);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event.as_deref(), Some("message_start"));
        assert_eq!(&events[0].data[..], b"a\nb");
    }

    #[test]
    fn last_event_without_blank_line_is_kept() {
        let events = decode_all(&[b"data: x\n\ndata: tail"]);
        assert_eq!(events.len(), 2);
        assert_eq!(&events[1].data[..], b"tail");
    }

    #[test]
    fn oversized_lines_are_refused() {
        let mut d = SseDecoder::new();
        let err = d.push(&vec![b'x'; MAX_PENDING + 1]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("an event stream line exceeded {MAX_PENDING} bytes")
        );
    }
}
