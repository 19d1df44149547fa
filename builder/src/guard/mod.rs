//! Bounds on the work an input can cause: paths kept beneath a root, the
//! time a solve may take, the nesting a YAML text may have.

pub(crate) mod beneath;
pub mod work_limit;
pub(crate) mod yaml;
