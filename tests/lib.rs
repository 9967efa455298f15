//! Test harness for real servers.
