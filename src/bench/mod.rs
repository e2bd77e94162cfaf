//! `readyloop bench`: a bounded load generator for comparing server modes.
//!
//! This first part holds what the measurements turn into: [`report`] renders
//! results as a markdown table, JSON and an SVG chart, and [`system`] reads
//! the machine's description and a server process's CPU time and memory.

pub mod report;
pub mod system;
