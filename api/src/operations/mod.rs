//! What an operator does besides serving, from the CLI or the API alike: the
//! service's tokens (`trousse token …`, `/api/v1/tokens`) and the image
//! store's garbage collection (`trousse images gc`, periodic in `serve`).

pub mod collect;
pub(crate) mod tokens;
