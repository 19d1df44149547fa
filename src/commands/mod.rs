//! One module per subcommand.

pub mod build;
pub mod cache;
pub mod images;
pub mod inspect;
pub mod lock;
pub mod prebuild;
pub mod serve;
pub mod serve_page;
pub mod store;
pub mod token;
