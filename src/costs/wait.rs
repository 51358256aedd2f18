//! How long `orbatch costs` keeps asking for a generation that is not known yet: the
//! `--wait` duration syntax and the growing pause between lookups of one id (FACTS §5.2:
//! `/generation` answers 404 for seconds to minutes after the call).

use std::time::Duration;

/// Multiples of the first pause: 1 s, 2 s, 5 s, 10 s, 30 s, 60 s, then every 60 s.
const STEPS: [u32; 6] = [1, 2, 5, 10, 30, 60];

/// The pause before the next lookup of an id, by how many lookups it has had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// The first pause; later ones are the [`STEPS`] multiples of it.
    pub first: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            first: Duration::from_secs(1),
        }
    }
}

/// Testing seam: `ORBATCH_COSTS_BACKOFF_MS` sets the first pause (same growth factors), so
/// tests wait out 404s in milliseconds. `--wait` stays real time.
pub const BACKOFF_ENV: &str = "ORBATCH_COSTS_BACKOFF_MS";

impl Schedule {
    /// The default schedule, or the one `ORBATCH_COSTS_BACKOFF_MS` asks for.
    pub fn from_env() -> Schedule {
        std::env::var(BACKOFF_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or_else(Schedule::default, |ms| Schedule {
                first: Duration::from_millis(ms),
            })
    }

    /// The pause after lookup number `n` (1-based) of an id came back "not yet".
    pub fn pause(&self, n: u32) -> Duration {
        let i = (n.max(1) - 1) as usize;
        let factor = STEPS[i.min(STEPS.len() - 1)];
        self.first.saturating_mul(factor)
    }
}

/// The longest `--wait`: a week. OpenRouter knows a generation within minutes (FACTS §5.2);
/// the bound keeps `now + wait` far from any overflow.
pub const MAX_WAIT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Parse a duration: `90s`, `10m`, `1h`, `1h30m`, `500ms` (jiff's friendly format, which also
/// takes `1 hour 30 minutes` and ISO 8601 `PT1H`), or plain seconds (`45`, `2.5`); at most
/// [`MAX_WAIT`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    let bad = || format!("{text:?} is not a duration: use e.g. 90s, 10m, 1h, 1h30m or seconds");
    let duration = match s.parse::<f64>() {
        Ok(secs) => Duration::try_from_secs_f64(secs).map_err(|_| bad())?,
        Err(_) => {
            let signed: jiff::SignedDuration = s.parse().map_err(|_| bad())?;
            Duration::try_from(signed).map_err(|_| bad())?
        }
    };
    if duration > MAX_WAIT {
        return Err(format!(
            "{text:?} is longer than a week (168h), the most it can be"
        ));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_the_usual_spellings() {
        let secs = |s: u64| Ok(Duration::from_secs(s));
        assert_eq!(parse_duration("90s"), secs(90));
        assert_eq!(parse_duration("10m"), secs(600));
        assert_eq!(parse_duration("1h"), secs(3600));
        assert_eq!(parse_duration("1h30m"), secs(5400));
        assert_eq!(parse_duration("45"), secs(45));
        assert_eq!(parse_duration(" 0 "), secs(0));
        assert_eq!(parse_duration("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    }

    #[test]
    fn bad_durations_say_what_is_expected() {
        for bad in [
            "",
            "m",
            "10x",
            "-5",
            "1h-2m",
            "ten minutes",
            "10m5",
            "nan",
            "-1m",
        ] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(err.contains("e.g. 90s"), "{bad}: {err}");
        }
    }

    #[test]
    fn durations_longer_than_a_week_are_refused() {
        assert_eq!(parse_duration("168h"), Ok(MAX_WAIT));
        for long in ["99999999h", "169h", "1e300", "99999999999999999999h"] {
            assert!(parse_duration(long).is_err(), "{long}");
        }
        let e = parse_duration("99999999h").unwrap_err();
        assert!(e.contains("longer than a week"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_a_bounded_duration_or_an_error(text in proptest::prelude::any::<String>(),
                                                      n in 0u64..100_000_000_000, unit in "(ms|s|m|h|d|)") {
            for t in [text, format!("{n}{unit}")] {
                if let Ok(d) = parse_duration(&t) {
                    proptest::prop_assert!(d <= MAX_WAIT, "{t}");
                    proptest::prop_assert!(tokio::time::Instant::now().checked_add(d).is_some());
                }
            }
        }
    }

    #[test]
    fn pauses_grow_then_stay_at_a_minute() {
        let s = Schedule::default();
        let got: Vec<u64> = (1..=8).map(|n| s.pause(n).as_secs()).collect();
        assert_eq!(got, [1, 2, 5, 10, 30, 60, 60, 60]);
        let fast = Schedule {
            first: Duration::from_millis(10),
        };
        assert_eq!(fast.pause(3), Duration::from_millis(50));
    }
}
