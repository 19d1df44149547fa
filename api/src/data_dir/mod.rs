//! The service's data directory: one service at a time (its lock), and the
//! upgrade steps a new version runs once over what an older one left.

pub(crate) mod copy;
pub(crate) mod lock;
pub(crate) mod upgrade;
