//! Wire types of the reference server's admin fault API (`/admin/faults`).
//!
//! - `POST /admin/faults` takes an [`InjectRequest`] and answers the [`InjectedFault`];
//! - `GET /admin/faults` answers a [`FaultList`] of the active faults;
//! - `DELETE /admin/faults/{id}` reverts one, `DELETE /admin/faults` reverts all.

use serde::{Deserialize, Serialize};

use crate::error::FaultError;
use crate::fault::FaultSpec;

/// Body of `POST /admin/faults`: the fault to inject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectRequest {
    /// The fault, validated by the server before it is applied.
    pub fault: FaultSpec,
}

impl InjectRequest {
    /// Validates the carried spec (see [`FaultSpec::validate`]).
    pub fn validate(&self) -> Result<(), FaultError> {
        self.fault.validate()
    }
}

/// An active fault as the server reports it, with its id and its expiry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectedFault {
    /// Server-assigned id, used to revert this fault.
    pub id: String,
    /// The fault as injected.
    pub spec: FaultSpec,
    /// When it was injected, in ms since the Unix epoch.
    pub injected_at_ms: u64,
    /// When the server reverts it on its own, in ms since the Unix epoch
    /// (`injected_at_ms + spec.duration_ms`).
    pub expires_at_ms: u64,
}

impl InjectedFault {
    /// An injected fault with its expiry computed from `injected_at_ms` and the spec's duration.
    pub fn new(id: impl Into<String>, spec: FaultSpec, injected_at_ms: u64) -> Self {
        let expires_at_ms = injected_at_ms.saturating_add(spec.duration_ms);
        InjectedFault {
            id: id.into(),
            spec,
            injected_at_ms,
            expires_at_ms,
        }
    }

    /// True once `now_ms` (ms since the Unix epoch) has reached the expiry.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        now_ms >= self.expires_at_ms
    }

    /// Time left before the expiry at `now_ms`, in ms (0 once expired).
    pub fn remaining_ms(&self, now_ms: u64) -> u64 {
        self.expires_at_ms.saturating_sub(now_ms)
    }
}

/// Body of `GET /admin/faults` (and of revert-all): the active faults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultList {
    /// The faults, oldest injection first.
    pub faults: Vec<InjectedFault>,
}

impl FaultList {
    /// True when no fault is active (what a verified rollback expects).
    pub fn is_empty(&self) -> bool {
        self.faults.is_empty()
    }
}
