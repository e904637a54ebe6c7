//! The operator's dashboard (ratatui): `app` holds the state and its pure
//! `update`, `ui` renders it, `keymap` is the one table of keys, and
//! `runner` connects them to the terminal and the engine.

pub mod app;
pub mod keymap;
pub mod runner;
pub mod ui;
