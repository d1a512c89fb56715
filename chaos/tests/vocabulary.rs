//! The fault vocabulary on the wire: round trips, validation, strictness, partition.

use chaos::{
    FaultError, FaultKind, FaultList, FaultSpec, InjectRequest, InjectedFault, SafetyStage, Stage,
    MAX_DURATION_MS,
};

/// One fault of every kind, with every parameter set to something non-default.
fn one_of_each() -> Vec<FaultKind> {
    vec![
        FaultKind::GpuOom {
            worker: Some("gpu-0".into()),
            fraction: 0.9,
        },
        FaultKind::ColdStart {
            models: vec!["sdxl-mini".into(), "flux-mini".into()],
            slow_storage_ms: 250,
        },
        FaultKind::ModelLoadFailure {
            model: Some("flux-mini".into()),
            probability: 0.5,
        },
        FaultKind::SafetySpike {
            stage: SafetyStage::Post,
            extra_block_fraction: 0.3,
        },
        FaultKind::StageLatency {
            stage: Stage::VaeDecode,
            added_ms: 400,
            jitter_ms: 50,
        },
        FaultKind::WorkerCrash {
            worker: Some("gpu-1".into()),
            restart_after_ms: 5000,
        },
        FaultKind::GpuThrottle {
            worker: Some("gpu-0".into()),
            factor: 2.5,
        },
        FaultKind::Xid {
            worker: Some("gpu-0".into()),
            code: 79,
        },
        FaultKind::QueueStall {
            tier: Some("relax".into()),
        },
        FaultKind::Latency {
            ms: 200,
            jitter_ms: 20,
        },
        FaultKind::Bandwidth { kbps: 64 },
        FaultKind::Timeout { ms: 1500 },
        FaultKind::ResetPeer { after_ms: 100 },
        FaultKind::SlowClose { delay_ms: 300 },
        FaultKind::HttpError {
            status: 503,
            probability: 0.1,
        },
    ]
}

fn spec(name: &str, fault: FaultKind) -> FaultSpec {
    FaultSpec {
        name: name.into(),
        fault,
        duration_ms: 30_000,
    }
}

#[test]
fn every_kind_is_covered_once() {
    let kinds: Vec<&str> = one_of_each().iter().map(FaultKind::kind_str).collect();
    assert_eq!(kinds, FaultKind::KINDS.to_vec());
}

#[test]
fn json_round_trip_of_each_kind() {
    for fault in one_of_each() {
        let s = spec("f", fault.clone());
        let json = serde_json::to_string(&s).unwrap();
        let tag = format!("\"kind\":\"{}\"", fault.kind_str());
        assert!(json.contains(&tag), "{json} lacks {tag}");
        let back: FaultSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s, "{json}");
        assert!(back.validate().is_ok(), "{json}: {:?}", back.validate());
    }
}

#[test]
fn yaml_round_trip_of_each_kind() {
    for fault in one_of_each() {
        let s = spec("f", fault.clone());
        let yaml = serde_yaml_ng::to_string(&s).unwrap();
        let back: FaultSpec = serde_yaml_ng::from_str(&yaml).unwrap();
        assert_eq!(back, s, "{yaml}");
    }
}

#[test]
fn hand_written_yaml_with_defaults() {
    let yaml = "
name: slow-vae
fault: { kind: stage_latency, stage: vae_decode, added_ms: 400 }
duration_ms: 20000
";
    let s: FaultSpec = serde_yaml_ng::from_str(yaml).unwrap();
    assert_eq!(
        s.fault,
        FaultKind::StageLatency {
            stage: Stage::VaeDecode,
            added_ms: 400,
            jitter_ms: 0
        }
    );
    s.validate().unwrap();

    let s: FaultSpec =
        serde_yaml_ng::from_str("name: storm\nfault:\n  kind: cold_start\nduration_ms: 1000\n")
            .unwrap();
    assert_eq!(
        s.fault,
        FaultKind::ColdStart {
            models: vec![],
            slow_storage_ms: 0
        }
    );

    let s: FaultSpec = serde_yaml_ng::from_str(
        "name: oom\nfault: {kind: gpu_oom, fraction: 1.0}\nduration_ms: 1000\n",
    )
    .unwrap();
    assert_eq!(
        s.fault,
        FaultKind::GpuOom {
            worker: None,
            fraction: 1.0
        }
    );
    // A scope left out is not written back out.
    assert!(!serde_json::to_string(&s).unwrap().contains("worker"));
}

#[test]
fn every_stage_round_trips_by_its_name() {
    for stage in Stage::ALL {
        let json = serde_json::to_string(&stage).unwrap();
        assert_eq!(json, format!("\"{}\"", stage.as_str()));
        assert_eq!(serde_json::from_str::<Stage>(&json).unwrap(), stage);
    }
    for stage in [SafetyStage::Pre, SafetyStage::Post] {
        let json = serde_json::to_string(&stage).unwrap();
        assert_eq!(json, format!("\"{}\"", stage.as_str()));
        assert_eq!(serde_json::from_str::<SafetyStage>(&json).unwrap(), stage);
    }
    assert!(serde_json::from_str::<Stage>("\"denoising\"").is_err());
    assert!(serde_json::from_str::<SafetyStage>("\"during\"").is_err());
}

#[test]
fn unknown_fields_are_rejected() {
    // Inside a kind.
    let err = serde_json::from_str::<FaultSpec>(
        r#"{"name":"oom","fault":{"kind":"gpu_oom","fraction":0.5,"fracton":0.5},"duration_ms":1}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("fracton"), "{err}");
    // In the spec.
    let err = serde_json::from_str::<FaultSpec>(
        r#"{"name":"oom","fault":{"kind":"gpu_oom","fraction":0.5},"duration_ms":1,"for":"5s"}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("for"), "{err}");
    // In YAML too.
    let err = serde_yaml_ng::from_str::<FaultSpec>(
        "name: x\nfault: {kind: http_error, status: 500, probability: 1, code: 7}\nduration_ms: 1\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("code"), "{err}");
    // An unknown kind.
    let err = serde_json::from_str::<FaultSpec>(
        r#"{"name":"x","fault":{"kind":"meteor_strike"},"duration_ms":1}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("meteor_strike"), "{err}");
    // In the admin wire types.
    assert!(serde_json::from_str::<InjectRequest>(
        r#"{"fault":{"name":"x","fault":{"kind":"timeout","ms":0},"duration_ms":1},"force":true}"#
    )
    .is_err());
    assert!(serde_json::from_str::<FaultList>(r#"{"faults":[],"total":0}"#).is_err());
}

#[test]
fn missing_required_parameter_is_rejected() {
    let err = serde_json::from_str::<FaultSpec>(
        r#"{"name":"x","fault":{"kind":"http_error","status":500},"duration_ms":1}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("probability"), "{err}");
}

fn field_of(s: &FaultSpec) -> String {
    let err: FaultError = s.validate().unwrap_err();
    assert!(
        err.to_string().contains(&err.field),
        "message {err} does not name {}",
        err.field
    );
    err.field
}

#[test]
fn validation_names_the_wrong_field() {
    let cases: Vec<(FaultKind, &str)> = vec![
        (
            FaultKind::GpuOom {
                worker: None,
                fraction: 1.5,
            },
            "fault.fraction",
        ),
        (
            FaultKind::GpuOom {
                worker: Some("".into()),
                fraction: 0.5,
            },
            "fault.worker",
        ),
        (
            FaultKind::GpuOom {
                worker: None,
                fraction: f64::NAN,
            },
            "fault.fraction",
        ),
        (
            FaultKind::ColdStart {
                models: vec!["sdxl-mini".into(), " ".into()],
                slow_storage_ms: 0,
            },
            "fault.models[1]",
        ),
        (
            FaultKind::ModelLoadFailure {
                model: None,
                probability: -0.1,
            },
            "fault.probability",
        ),
        (
            FaultKind::ModelLoadFailure {
                model: Some("".into()),
                probability: 0.1,
            },
            "fault.model",
        ),
        (
            FaultKind::SafetySpike {
                stage: SafetyStage::Pre,
                extra_block_fraction: 2.0,
            },
            "fault.extra_block_fraction",
        ),
        (
            FaultKind::StageLatency {
                stage: Stage::Queue,
                added_ms: 0,
                jitter_ms: 0,
            },
            "fault.added_ms",
        ),
        (
            FaultKind::WorkerCrash {
                worker: Some(String::new()),
                restart_after_ms: 10,
            },
            "fault.worker",
        ),
        (
            FaultKind::GpuThrottle {
                worker: None,
                factor: 0.5,
            },
            "fault.factor",
        ),
        (
            FaultKind::GpuThrottle {
                worker: None,
                factor: f64::INFINITY,
            },
            "fault.factor",
        ),
        (
            FaultKind::Xid {
                worker: None,
                code: 0,
            },
            "fault.code",
        ),
        (
            FaultKind::QueueStall {
                tier: Some("".into()),
            },
            "fault.tier",
        ),
        (
            FaultKind::Latency {
                ms: 0,
                jitter_ms: 0,
            },
            "fault.ms",
        ),
        (FaultKind::Bandwidth { kbps: 0 }, "fault.kbps"),
        (FaultKind::SlowClose { delay_ms: 0 }, "fault.delay_ms"),
        (
            FaultKind::HttpError {
                status: 200,
                probability: 0.5,
            },
            "fault.status",
        ),
        (
            FaultKind::HttpError {
                status: 600,
                probability: 0.5,
            },
            "fault.status",
        ),
        (
            FaultKind::HttpError {
                status: 500,
                probability: 1.01,
            },
            "fault.probability",
        ),
    ];
    for (fault, want) in cases {
        let s = spec("bad", fault.clone());
        assert_eq!(field_of(&s), want, "{fault:?}");
        // The kind alone names the bare parameter.
        let bare = fault.validate().unwrap_err().field;
        assert_eq!(format!("fault.{bare}"), want);
    }

    let mut s = spec("x", FaultKind::Timeout { ms: 0 });
    s.validate().unwrap();
    s.duration_ms = 0;
    assert_eq!(field_of(&s), "duration_ms");
    s.duration_ms = MAX_DURATION_MS + 1;
    assert_eq!(field_of(&s), "duration_ms");
    s.duration_ms = MAX_DURATION_MS;
    s.validate().unwrap();
    for bad in ["", "oom.start", "has space", &"n".repeat(65)] {
        s.name = bad.into();
        assert_eq!(field_of(&s), "name", "{bad:?}");
    }

    let err = spec(
        "oom",
        FaultKind::GpuOom {
            worker: None,
            fraction: 3.0,
        },
    )
    .validate()
    .unwrap_err();
    assert_eq!(err.fault, "oom");
    assert_eq!(
        err.to_string(),
        "fault `oom`: field `fault.fraction`: must be in [0, 1], got 3"
    );
}

#[test]
fn boundaries_are_inclusive() {
    for fault in [
        FaultKind::GpuOom {
            worker: None,
            fraction: 0.0,
        },
        FaultKind::GpuOom {
            worker: None,
            fraction: 1.0,
        },
        FaultKind::GpuThrottle {
            worker: None,
            factor: 1.0,
        },
        FaultKind::HttpError {
            status: 400,
            probability: 0.0,
        },
        FaultKind::HttpError {
            status: 599,
            probability: 1.0,
        },
        FaultKind::StageLatency {
            stage: Stage::Upload,
            added_ms: 0,
            jitter_ms: 10,
        },
        FaultKind::ResetPeer { after_ms: 0 },
    ] {
        spec("ok", fault.clone())
            .validate()
            .unwrap_or_else(|e| panic!("{fault:?}: {e}"));
    }
}

#[test]
fn server_side_partition() {
    let server = [
        "gpu_oom",
        "cold_start",
        "model_load_failure",
        "safety_spike",
        "stage_latency",
        "worker_crash",
        "gpu_throttle",
        "xid",
        "queue_stall",
    ];
    let proxy = [
        "latency",
        "bandwidth",
        "timeout",
        "reset_peer",
        "slow_close",
        "http_error",
    ];
    for fault in one_of_each() {
        let k = fault.kind_str();
        assert_eq!(fault.is_server_side(), server.contains(&k), "{k}");
        assert_eq!(fault.is_proxy_side(), proxy.contains(&k), "{k}");
        assert_ne!(fault.is_server_side(), fault.is_proxy_side());
    }
    assert_eq!(server.len() + proxy.len(), FaultKind::KINDS.len());
}

#[test]
fn admin_wire_types_round_trip() {
    let req = InjectRequest {
        fault: spec(
            "spike",
            FaultKind::SafetySpike {
                stage: SafetyStage::Pre,
                extra_block_fraction: 0.2,
            },
        ),
    };
    req.validate().unwrap();
    let json = serde_json::to_string(&req).unwrap();
    assert_eq!(serde_json::from_str::<InjectRequest>(&json).unwrap(), req);

    let injected = InjectedFault::new("f-1", req.fault.clone(), 1_000);
    assert_eq!(injected.expires_at_ms, 31_000);
    assert!(!injected.is_expired(30_999));
    assert!(injected.is_expired(31_000));
    assert_eq!(injected.remaining_ms(30_000), 1_000);
    assert_eq!(injected.remaining_ms(40_000), 0);

    let list = FaultList {
        faults: vec![injected],
    };
    assert!(!list.is_empty());
    for text in [
        serde_json::to_string(&list).unwrap(),
        serde_yaml_ng::to_string(&list).unwrap(),
    ] {
        let back: FaultList = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(back, list, "{text}");
    }
    assert!(FaultList::default().is_empty());
    assert_eq!(
        serde_json::to_string(&FaultList::default()).unwrap(),
        r#"{"faults":[]}"#
    );
}
