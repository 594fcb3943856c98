//! rfs flists: the manifest reader, the block codec, stores and routes, caches, and the
//! read-only FUSE filesystem that serves them lazily.

pub mod buffers;
pub mod cache;
pub mod codec;
pub mod daemon;
pub mod fs;
pub mod fuse;
pub mod meta;
pub mod mount;
pub mod pack;
pub mod prefetch;
pub mod router;
pub mod source;
pub mod store;
pub mod workers;
