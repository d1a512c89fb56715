//! The firedrill fault vocabulary: one serde-typed description of every fault a drill can inject,
//! shared by the harness (scenarios, timeline, proxy) and the reference server (its pipeline hooks
//! and admin API).
//!
//! A fault is a [`FaultSpec`]: a name (scenarios refer to it, `after: oom.start`), a
//! [`FaultKind`] carrying the fault's scope and intensity, and a duration, so that every injected
//! fault expires on its own. The admin API's wire types ([`InjectRequest`], [`InjectedFault`],
//! [`FaultList`]) live in [`api`].
//!
//! ```
//! use chaos::{FaultKind, FaultSpec};
//!
//! let spec: FaultSpec = serde_json::from_str(
//!     r#"{"name": "oom", "fault": {"kind": "gpu_oom", "worker": "w0", "fraction": 0.9},
//!         "duration_ms": 30000}"#,
//! )
//! .unwrap();
//! assert!(spec.validate().is_ok());
//! assert!(spec.fault.is_server_side());
//! assert_eq!(spec.fault.kind_str(), "gpu_oom");
//! ```

pub mod api;
pub mod client;
pub mod command;
pub mod error;
pub mod fault;
pub mod injector;
pub mod proxy;
pub mod timeline;

pub use api::{FaultList, InjectRequest, InjectedFault};
pub use client::{AdminClient, AdminError};
pub use error::FaultError;
pub use fault::{FaultKind, FaultSpec, SafetyStage, Stage, MAX_DURATION_MS};
pub use injector::{Channels, Injector, JournalAction, JournalEntry, Rollback};
pub use timeline::{Action, CommandFault, Step, TimedFault, Timeline};
