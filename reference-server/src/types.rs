//! Small value types shared by every stage of the pipeline.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Service tier: decides queue priority, deadlines and default step counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Highest priority, shortest deadline.
    Turbo,
    /// Default tier.
    Fast,
    /// Best effort: runs when turbo and fast leave room (or when it has aged).
    Relax,
}

impl Tier {
    /// Every tier, highest priority first.
    pub const ALL: [Tier; 3] = [Tier::Turbo, Tier::Fast, Tier::Relax];

    /// Priority rank: 0 is served first.
    pub fn rank(self) -> usize {
        self as usize
    }

    /// The label value used in metrics, logs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Turbo => "turbo",
            Tier::Fast => "fast",
            Tier::Relax => "relax",
        }
    }

    /// Parses a label value; `None` for anything else.
    pub fn parse(s: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Output resolution in pixels, written `WxH` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Resolution {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl Resolution {
    /// Parses `WxH` (for example `256x256`).
    pub fn parse(s: &str) -> Option<Resolution> {
        let (w, h) = s.split_once('x')?;
        Some(Resolution {
            width: w.trim().parse().ok()?,
            height: h.trim().parse().ok()?,
        })
    }

    /// Number of pixels.
    pub fn pixels(self) -> u64 {
        self.width as u64 * self.height as u64
    }
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

impl Serialize for Resolution {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Resolution {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Resolution::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("expected WxH, got {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tier_round_trips_and_orders() {
        for t in Tier::ALL {
            assert_eq!(Tier::parse(t.as_str()), Some(t));
        }
        assert!(Tier::Turbo.rank() < Tier::Fast.rank());
        assert!(Tier::Fast.rank() < Tier::Relax.rank());
        assert_eq!(Tier::parse("gold"), None);
    }

    #[test]
    fn resolution_parses_and_prints() {
        let r = Resolution::parse("256x128").unwrap();
        assert_eq!((r.width, r.height), (256, 128));
        assert_eq!(r.to_string(), "256x128");
        assert_eq!(Resolution::parse("256"), None);
        assert_eq!(Resolution::parse("ax1"), None);
    }
}
