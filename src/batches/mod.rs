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
//! - `pacing.rs`: keeping a batch behind live traffic; `output.rs`: the output and error
//!   files.
//!
//! The runner that sends the lines through the pipeline is `proxy/batch_runner.rs`: it uses
//! the pipeline, which this folder sits below.

pub mod files;
pub mod input;
pub mod journal;
pub mod multipart;
pub mod output;
pub mod pacing;
pub mod paging;
pub mod record;
pub mod registry;

pub use registry::{BatchError, BatchSettings, Batches, Command, NewBatch};
