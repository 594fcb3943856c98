//! Dependency maps: check them against the tree without reading module content, stamp
//! a tree's content at build time, and repair the maps only when they are wrong.

pub mod check;
pub mod ensure;
pub mod maps;
pub mod proof;
pub mod regen;
pub mod stamp;
pub mod view;
