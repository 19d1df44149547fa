//! trousse as a client of the JupyterHub's REST API: a hub user's token
//! resolved into course rights, and a user's server started with an image.

pub(crate) mod launch;
pub(crate) mod tokens;
