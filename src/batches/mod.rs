//! Files and batches (OpenAI's `/v1/files` and `/v1/batches`), run by the gateway itself
//! through its own pipeline, so they work with every provider kind and obey policies, limits
//! and budgets like any request.
//!
//! - `files.rs`: uploaded and written files in `<data>/files`, owned by a key.
//! - `multipart.rs`: reading an upload (`multipart/form-data`) as it streams in.
//! - `input.rs`: a batch input file's lines, checked and indexed.
//! - `record.rs`: a batch in OpenAI's shape, and the record kept of it.
//! - `registry.rs`: `Batches` (in `AppState`): records in memory, create and cancel, the
//!   runner's commands.
//! - `journal.rs`: a batch's progress on disk, appended and synced as lines are answered.
//! - `paging.rs`: the cursor paging of the list endpoints.
//! - `runner.rs`: sending the lines through `proxy::forward`; `pacing.rs` keeps it behind
//!   live traffic; `output.rs` writes the output and error files.

pub mod files;
pub mod input;
pub mod journal;
pub mod multipart;
pub mod output;
pub mod pacing;
pub mod paging;
pub mod record;
pub mod registry;
pub mod runner;

pub use registry::{BatchError, BatchSettings, Batches, Command, NewBatch};
