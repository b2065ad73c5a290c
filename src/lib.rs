//! nhi-assure: continuous assurance for non-human identities.
//!
//! One pass flows one way (see `ARCHITECTURE.md`):
//! [`sources`] (the connector registry) → [`pass`] (read approvals and
//! inventories) → [`engine`] (estate → graph → facts → rules → findings and
//! plan, pure) → [`store`] (record) → [`act`] (enforce behind the rails).
//! [`report`] renders passes and recorded runs; [`notify`] tells owners
//! (digests, warnings before enforcement); [`daemon`] runs passes on a
//! schedule and on events; [`cli`] parses arguments and dispatches.
//! A module only uses modules listed before it in this order:
//! leaves ([`safe_file`], [`progress`], [`synth`]) · [`engine`] · [`sources`] ·
//! [`config`] · [`store`] · [`pass`] · [`act`] · [`report`] · [`notify`] · [`daemon`] · [`cli`]
//! (checked by `tests/layering.rs`).

pub mod act;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod notify;
pub mod pass;
pub mod progress;
pub mod report;
pub mod safe_file;
pub mod sources;
pub mod store;
pub mod synth;
