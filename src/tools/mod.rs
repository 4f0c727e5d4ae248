//! The offline tools, one room per command: `check` (validate and lint a config), `explain`
//! (one request, step by step) and `test` (policy test cases). Each keeps what it decides apart
//! from how it prints it (`output.rs`). They run the server's own decision code (`engine`) on a
//! generation built offline (`live::Generation::offline`).

pub mod check;
pub mod explain;
pub mod test;
