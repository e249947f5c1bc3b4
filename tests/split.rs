//! End-to-end tests of separate `ferry server` and `ferry edge` processes.
mod common;
use common::*;
