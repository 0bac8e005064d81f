//! Stored Responses API responses in sled: the trees `responses` (each response in pieces,
//! under its id) and `response_ages` (created_ms, 8 bytes big-endian, ++ id → nothing), written
//! together in one transaction, so retention finds what to prune without reading responses.
//!
//! No write here flushes: like the request log, a response reaches the disk with sled's
//! periodic flush (500 ms) or a `Backend::sync`, never with a wait on the request path.

use super::blocking;
use super::database::Database;
use crate::store::error::{StoreError, What};
use crate::store::responses::{ResponseStore, StoredResponse};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The most bytes of a response in one sled value. A conversation grows with every turn and
/// can reach megabytes; as one value it would make sled write its leaf as a blob (a page over
/// a quarter segment, see `database.rs`), which sled's cache never evicts and whose failed
/// write jams the database until a restart. sled splits a leaf beyond 16 values, so pieces of
/// this size keep a leaf under 16 × 24 KiB, as the request log's records do.
const PIECE_BYTES: usize = 24 * 1024;

/// The first byte of a response's first piece: the pieces hold LZ4 (size prepended) of the
/// response's JSON. A conversation repeats itself from turn to turn, and sled's memory grows
/// with the bytes written.
const LZ4_JSON: u8 = 1;

/// The head of a first piece: the format byte, then the write's stamp (8 bytes), created_ms
/// (8) and the number of pieces (4), big-endian; the first part of the data follows.
const HEAD_BYTES: usize = 21;

/// Age index entries a prune reads at a time.
const BATCH: usize = 256;

/// How often a read starts again when the response was replaced while it was read.
const READ_TRIES: usize = 3;

/// What the first piece says about the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    /// Different for every write (see [`Responses::stamps`]).
    stamp: u64,
    created_ms: u64,
    pieces: u32,
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("stored response: {what}"))
}

fn be_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let end = at.checked_add(8)?;
    bytes
        .get(at..end)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
}

impl Head {
    fn read(first: &[u8]) -> Result<Head, StoreError> {
        if first.first() != Some(&LZ4_JSON) || first.len() < HEAD_BYTES {
            return Err(corrupt("unknown format"));
        }
        let pieces = first
            .get(17..21)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes);
        match (be_u64(first, 1), be_u64(first, 9), pieces) {
            (Some(stamp), Some(created_ms), Some(pieces)) if pieces > 0 => Ok(Head {
                stamp,
                created_ms,
                pieces,
            }),
            _ => Err(corrupt("unreadable head")),
        }
    }
}

/// A piece's key: the id, then the piece's number (4 bytes big-endian). Pieces are read by
/// their exact key only, never by prefix, so no id can be mistaken for another: two keys of
/// the same length with the same number have ids of the same length, hence the same id.
fn piece_key(id: &[u8], piece: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(id.len() + 4);
    k.extend_from_slice(id);
    k.extend_from_slice(&piece.to_be_bytes());
    k
}

fn age_key(created_ms: u64, id: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + id.len());
    k.extend_from_slice(&created_ms.to_be_bytes());
    k.extend_from_slice(id);
    k
}

/// A response's pieces, the first with its head.
fn pieces(response: &StoredResponse, stamp: u64) -> Result<Vec<Vec<u8>>, StoreError> {
    let json = serde_json::to_vec(response)
        .map_err(|e| StoreError::Invalid(format!("stored response: {e}")))?;
    let packed = lz4_flex::compress_prepend_size(&json);
    let count = u32::try_from(packed.len().div_ceil(PIECE_BYTES))
        .map_err(|_| StoreError::Invalid("stored response: too large".into()))?;
    let mut out = Vec::with_capacity(count as usize);
    for (i, data) in packed.chunks(PIECE_BYTES).enumerate() {
        if i > 0 {
            out.push(data.to_vec());
            continue;
        }
        let mut first = Vec::with_capacity(HEAD_BYTES + data.len());
        first.push(LZ4_JSON);
        first.extend_from_slice(&stamp.to_be_bytes());
        first.extend_from_slice(&response.created_ms.to_be_bytes());
        first.extend_from_slice(&count.to_be_bytes());
        first.extend_from_slice(data);
        out.push(first);
    }
    Ok(out)
}

/// The response from its first piece and the others, in order.
fn decode(first: &[u8], rest: &[sled::IVec]) -> Result<StoredResponse, StoreError> {
    let data = first.get(HEAD_BYTES..).unwrap_or_default();
    let mut packed = Vec::with_capacity(data.len() + rest.len() * PIECE_BYTES);
    packed.extend_from_slice(data);
    for piece in rest {
        packed.extend_from_slice(piece);
    }
    let json = lz4_flex::decompress_size_prepended(&packed).map_err(|e| corrupt(&e.to_string()))?;
    serde_json::from_slice(&json).map_err(|e| corrupt(&e.to_string()))
}

fn transaction_error(e: TransactionError<()>) -> StoreError {
    match e {
        TransactionError::Storage(e) => e.into(),
        TransactionError::Abort(()) => StoreError::Backend("a response write was aborted".into()),
    }
}

/// The stored responses in sled; a handle, clones share it.
#[derive(Clone)]
pub struct SledResponses(Arc<Responses>);

struct Responses {
    /// The trees `responses` and `response_ages`.
    db: Arc<Database>,
    /// The next write's stamp. A read takes a response's pieces one by one, without the lock a
    /// transaction would take from every writer; the stamp in the first piece tells it whether
    /// the response was written again meanwhile. Stamps only go up, across restarts too
    /// (they start from the clock, a million per millisecond), so a stamp never comes back.
    stamps: AtomicU64,
}

impl SledResponses {
    pub fn open(db: &Arc<Database>) -> SledResponses {
        SledResponses(Arc::new(Responses {
            db: db.clone(),
            stamps: AtomicU64::new(crate::clock::now_ms().saturating_mul(1_000_000)),
        }))
    }
}

impl Responses {
    fn put(&self, response: &StoredResponse) -> Result<(), StoreError> {
        self.db.writable()?;
        let stamp = self.stamps.fetch_add(1, Ordering::Relaxed);
        // Encoded before the transaction: it holds sled's global write lock.
        let pieces = pieces(response, stamp)?;
        let id = response.id.as_bytes();
        let keys: Vec<Vec<u8>> = (0u32..)
            .zip(&pieces)
            .map(|(i, _)| piece_key(id, i))
            .collect();
        let count = pieces.len() as u32;
        let first_key = piece_key(id, 0);
        let age = age_key(response.created_ms, id);
        let trees = self.db.trees()?;
        (&trees.responses, &trees.response_ages)
            .transaction(|(responses, ages)| {
                // A response replaced: its pieces beyond the new count and its age go. (One
                // whose head cannot be read is overwritten as far as the new one reaches.)
                if let Some(old) = responses.get(&first_key)? {
                    if let Ok(old) = Head::read(&old) {
                        for i in count..old.pieces {
                            responses.remove(piece_key(id, i))?;
                        }
                        ages.remove(age_key(old.created_ms, id))?;
                    }
                }
                for (key, piece) in keys.iter().zip(&pieces) {
                    responses.insert(key.as_slice(), piece.as_slice())?;
                }
                ages.insert(age.as_slice(), &[])?;
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(transaction_error)
    }

    fn get(&self, id: &str) -> Result<Option<StoredResponse>, StoreError> {
        let id = id.as_bytes();
        let first_key = piece_key(id, 0);
        let head_now = |trees: &super::database::Trees| -> Result<Option<Head>, StoreError> {
            Ok(match trees.responses.get(&first_key)? {
                Some(first) => Some(Head::read(&first)?),
                None => None,
            })
        };
        for _ in 0..READ_TRIES {
            let trees = self.db.trees()?;
            let Some(first) = trees.responses.get(&first_key)? else {
                return Ok(None);
            };
            let head = Head::read(&first)?;
            if head.pieces == 1 {
                return decode(&first, &[]).map(Some);
            }
            let mut rest = Vec::with_capacity(head.pieces as usize - 1);
            for i in 1..head.pieces {
                match trees.responses.get(piece_key(id, i))? {
                    Some(piece) => rest.push(piece),
                    None => break,
                }
            }
            // The same stamp after the last piece: no write came in between, and every piece
            // is of the write the first one was.
            if head_now(&trees)? == Some(head) {
                if rest.len() + 1 != head.pieces as usize {
                    return Err(corrupt("a piece is missing"));
                }
                return decode(&first, &rest).map(Some);
            }
        }
        Err(StoreError::Unavailable(
            "the stored response kept changing while it was read".into(),
        ))
    }

    fn delete(&self, id: &str) -> Result<bool, StoreError> {
        self.db.writable()?;
        let id = id.as_bytes();
        let first_key = piece_key(id, 0);
        let trees = self.db.trees()?;
        (&trees.responses, &trees.response_ages)
            .transaction(|(responses, ages)| {
                let Some(first) = responses.remove(first_key.as_slice())? else {
                    return Ok(false);
                };
                if let Ok(head) = Head::read(&first) {
                    for i in 1..head.pieces {
                        responses.remove(piece_key(id, i))?;
                    }
                    ages.remove(age_key(head.created_ms, id))?;
                }
                Ok::<_, ConflictableTransactionError<()>>(true)
            })
            .map_err(transaction_error)
    }

    /// One transaction per response, so a prune never holds up other writers for long.
    fn prune(&self, before_ms: u64) -> Result<u64, StoreError> {
        self.db.writable()?;
        let mut removed = 0;
        loop {
            let trees = self.db.trees()?;
            let batch: Vec<sled::IVec> = trees
                .response_ages
                .range(..before_ms.to_be_bytes().to_vec())
                .keys()
                .take(BATCH)
                .collect::<Result<_, _>>()?;
            for age in &batch {
                let (Some(created_ms), Some(id)) = (be_u64(age, 0), age.get(8..)) else {
                    trees.response_ages.remove(age)?;
                    continue;
                };
                let first_key = piece_key(id, 0);
                let gone = (&trees.responses, &trees.response_ages)
                    .transaction(|(responses, ages)| {
                        ages.remove(age)?;
                        let Some(first) = responses.get(&first_key)? else {
                            return Ok(false);
                        };
                        match Head::read(&first) {
                            // Written again since with another age: that entry prunes it.
                            Ok(head) if head.created_ms != created_ms => return Ok(false),
                            Ok(head) => {
                                for i in 1..head.pieces {
                                    responses.remove(piece_key(id, i))?;
                                }
                            }
                            Err(_) => {}
                        }
                        responses.remove(first_key.as_slice())?;
                        Ok::<_, ConflictableTransactionError<()>>(true)
                    })
                    .map_err(transaction_error)?;
                removed += u64::from(gone);
            }
            if batch.len() < BATCH {
                return Ok(removed);
            }
        }
    }
}

#[async_trait::async_trait]
impl ResponseStore for SledResponses {
    async fn put(&self, response: StoredResponse) -> Result<(), StoreError> {
        let responses = self.0.clone();
        blocking(move || {
            let written = responses.put(&response);
            if let Err(e) = &written {
                responses.db.report(What::Responses, e);
            }
            written
        })
        .await
    }

    async fn get(&self, id: &str) -> Result<Option<StoredResponse>, StoreError> {
        let (responses, id) = (self.0.clone(), id.to_string());
        blocking(move || responses.get(&id)).await
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let (responses, id) = (self.0.clone(), id.to_string());
        blocking(move || {
            let deleted = responses.delete(&id);
            if let Err(e) = &deleted {
                responses.db.report(What::Responses, e);
            }
            deleted
        })
        .await
    }

    /// Failures are reported by the caller (the accounting writer's retention).
    async fn prune(&self, before_ms: u64) -> Result<u64, StoreError> {
        let responses = self.0.clone();
        blocking(move || responses.prune(before_ms)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn open() -> (tempfile::TempDir, Arc<Database>, SledResponses) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path(), 1 << 20).unwrap();
        let responses = SledResponses::open(&db);
        (dir, db, responses)
    }

    /// A response whose conversation is `bytes` of hex that LZ4 cannot shrink much (so it
    /// takes many pieces), different for every `seed`.
    fn response(id: &str, created_ms: u64, bytes: usize, seed: u64) -> StoredResponse {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut text = String::with_capacity(bytes + 16);
        while text.len() < bytes {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            text.push_str(&format!("{x:016x}"));
        }
        StoredResponse {
            id: id.into(),
            key_id: "key_a".into(),
            created_ms,
            conversation: vec![json!({"role": "user", "content": text})],
            response: json!({"id": id, "object": "response", "seed": seed}),
        }
    }

    fn counts(db: &Database) -> (usize, usize) {
        let trees = db.trees().unwrap();
        (trees.responses.len(), trees.response_ages.len())
    }

    #[tokio::test]
    async fn a_replaced_or_pruned_response_leaves_no_piece_behind() {
        let (_dir, db, responses) = open();
        let big = response("resp_1", 1_000, 200_000, 1);
        responses.put(big.clone()).await.unwrap();
        let (pieces, ages) = counts(&db);
        assert!(pieces > 4, "a big response is cut in pieces: {pieces}");
        assert_eq!(ages, 1);
        assert_eq!(responses.get("resp_1").await.unwrap(), Some(big));

        // Replaced by a small one made at another time: one piece, one age.
        let small = response("resp_1", 5_000, 100, 2);
        responses.put(small.clone()).await.unwrap();
        assert_eq!(counts(&db), (1, 1));
        assert_eq!(responses.get("resp_1").await.unwrap(), Some(small));
        // Its old age no longer prunes it.
        assert_eq!(responses.prune(2_000).await.unwrap(), 0);
        assert!(responses.get("resp_1").await.unwrap().is_some());

        responses
            .put(response("resp_2", 1_500, 200_000, 3))
            .await
            .unwrap();
        assert_eq!(responses.prune(2_000).await.unwrap(), 1);
        assert_eq!(counts(&db), (1, 1), "every piece of resp_2 went");
        assert!(responses.get("resp_2").await.unwrap().is_none());

        responses
            .put(response("resp_3", 6_000, 200_000, 4))
            .await
            .unwrap();
        assert!(responses.delete("resp_3").await.unwrap());
        assert!(responses.delete("resp_1").await.unwrap());
        assert_eq!(counts(&db), (0, 0));
    }

    #[tokio::test]
    async fn ids_that_are_prefixes_of_each_other_stay_apart() {
        let (_dir, _db, responses) = open();
        let long = "resp_a\0\0\0\0";
        responses
            .put(response("resp_a", 1, 100_000, 1))
            .await
            .unwrap();
        responses.put(response(long, 1, 100, 2)).await.unwrap();
        assert_eq!(
            responses.get("resp_a").await.unwrap().unwrap().response["seed"],
            1
        );
        assert_eq!(
            responses.get(long).await.unwrap().unwrap().response["seed"],
            2
        );
        assert!(responses.delete(long).await.unwrap());
        assert_eq!(
            responses.get("resp_a").await.unwrap(),
            Some(response("resp_a", 1, 100_000, 1))
        );
    }

    #[tokio::test]
    async fn a_write_while_the_store_cannot_write_is_refused_and_counted() {
        let (_dir, db, responses) = open();
        responses.put(response("resp_1", 1, 100, 1)).await.unwrap();
        let full = StoreError::Io(std::io::Error::new(std::io::ErrorKind::StorageFull, "test"));
        db.report(What::Probe, &full);
        let refused = responses.put(response("resp_2", 1, 100, 2)).await;
        assert!(matches!(refused, Err(StoreError::Unavailable(_))));
        assert!(responses.delete("resp_1").await.is_err());
        let mut metrics = String::new();
        db.render_metrics(&mut metrics);
        assert!(
            metrics.contains("switchboard_store_write_failures_total{what=\"responses\"} 2"),
            "{metrics}"
        );
        // Reads go on.
        assert!(responses.get("resp_1").await.unwrap().is_some());
    }

    /// A read takes the pieces one by one while a writer replaces the response again and
    /// again: it gets one whole response, never pieces of two.
    #[test]
    fn a_read_during_replacements_gets_one_whole_response() {
        let (_dir, _db, responses) = open();
        let versions = [
            response("resp_1", 1, 150_000, 1),
            response("resp_1", 1, 150_000, 2),
        ];
        responses.0.put(&versions[0]).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (responses, versions, stop) = (responses.clone(), versions.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    responses.0.put(&versions[i % 2]).unwrap();
                }
                i
            })
        };
        let mut whole = 0;
        for _ in 0..1000 {
            match responses.0.get("resp_1") {
                Ok(Some(read)) => {
                    assert!(versions.contains(&read), "a response made of two writes");
                    whole += 1;
                }
                // Replaced under every try: said so, never a mixed answer.
                Err(StoreError::Unavailable(_)) => {}
                other => panic!("{other:?}"),
            }
        }
        stop.store(true, Ordering::Relaxed);
        let writes = writer.join().unwrap();
        assert!(
            whole > 0 && writes > 1,
            "whole reads {whole}, writes {writes}"
        );
    }
}
