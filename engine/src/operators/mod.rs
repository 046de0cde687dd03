//! The runtime operators, one per file. Each is instantiated once per worker by its
//! [`NodeFactory`](crate::runtime::graph::NodeFactory); the public API in
//! [`stream`](crate::stream) is a thin layer that adds the factory to the graph.

pub(crate) mod key_by;
pub(crate) mod process;
pub(crate) mod process_stateless;
pub(crate) mod sink;
pub(crate) mod source;
pub(crate) mod stateless;
pub(crate) mod union;
pub(crate) mod watermarks;
pub(crate) mod window_pane;
pub(crate) mod window_session;
