//! Choosing where a request goes, with no I/O: the request made canonical
//! first (`normalize`), then the port's listener, the
//! virtual host and the first matching route (`select`), and hosts the
//! snapshot lacks asked of the controller on demand (`discovery`).

pub mod discovery;
pub mod normalize;
pub mod select;
