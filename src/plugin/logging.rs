//! hclog-style JSON logging on stderr.
//!
//! go-plugin reads the plugin's stderr, parses lines shaped like hclog's JSON output and re-logs them
//! through Terraform's logger, where `TF_LOG` / `TF_LOG_PROVIDER` decide what is shown. The provider filters
//! at the same level itself so it does no formatting work nobody will read.
//!
//! Secrets: provider code never logs credentials or passwords, and AWS SDK events are only passed on at
//! DEBUG and above (SDK TRACE events can include request and response bodies).

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

/// The level Terraform asked for: `TF_LOG_PROVIDER`, else `TF_LOG`; `None` means off.
pub fn level_from_env() -> Option<Level> {
    let setting = std::env::var("TF_LOG_PROVIDER").or_else(|_| std::env::var("TF_LOG")).unwrap_or_default();
    parse_level(&setting)
}

fn parse_level(setting: &str) -> Option<Level> {
    match setting.trim().to_ascii_uppercase().as_str() {
        "TRACE" | "JSON" => Some(Level::TRACE),
        "DEBUG" => Some(Level::DEBUG),
        "INFO" => Some(Level::INFO),
        "WARN" => Some(Level::WARN),
        "ERROR" => Some(Level::ERROR),
        "" => Some(Level::WARN),
        _ => None,
    }
}

/// Installs the stderr logger as the global subscriber.
pub fn init() {
    if let Some(level) = level_from_env() {
        let _ = tracing_subscriber::registry().with(HclogLayer { level }).try_init();
    }
}

/// Formats tracing events as hclog JSON lines.
struct HclogLayer {
    level: Level,
}

impl<S: Subscriber> Layer<S> for HclogLayer {
    fn enabled(&self, metadata: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        let ours = metadata.target().starts_with("terraform_provider_datavault");
        let sdk = metadata.target().starts_with("aws");
        let level = *metadata.level();
        level <= self.level && (ours || (sdk && level <= Level::DEBUG))
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let line = format_event(event);
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

fn format_event(event: &Event<'_>) -> String {
    let metadata = event.metadata();
    let mut fields = FieldCollector::default();
    event.record(&mut fields);
    let module = if metadata.target().starts_with("aws") { "provider.aws-sdk" } else { "provider" };
    let mut object = serde_json::Map::new();
    object.insert("@level".into(), hclog_level(*metadata.level()).into());
    object.insert("@message".into(), fields.message.into());
    object.insert("@module".into(), module.into());
    object.insert("@timestamp".into(), timestamp(SystemTime::now()).into());
    for (key, value) in fields.fields {
        object.insert(key, value.into());
    }
    let mut line = serde_json::Value::Object(object).to_string();
    line.push('\n');
    line
}

fn hclog_level(level: Level) -> &'static str {
    match level {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    }
}

/// RFC 3339 with microseconds in UTC, the layout go-plugin parses (`2006-01-02T15:04:05.000000Z07:00`).
fn timestamp(now: SystemTime) -> String {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs() as i64;
    let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    let mut out = String::with_capacity(27);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60,
        since_epoch.subsec_micros()
    );
    out
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[derive(Default)]
struct FieldCollector {
    message: String,
    fields: Vec<(String, String)>,
}

impl Visit for FieldCollector {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record(field, format!("{value:?}"));
    }
}

impl FieldCollector {
    fn record(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.message = value;
        } else {
            self.fields.push((field.name().to_string(), value));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timestamps_use_go_plugins_layout() {
        let t = UNIX_EPOCH + Duration::from_micros(1_764_078_123_456_789);
        assert_eq!(timestamp(t), "2025-11-25T13:42:03.456789Z");
    }

    #[test]
    fn levels_follow_terraforms_names() {
        assert_eq!(parse_level("debug"), Some(Level::DEBUG));
        assert_eq!(parse_level("JSON"), Some(Level::TRACE));
        assert_eq!(parse_level("off"), None);
        assert_eq!(parse_level(""), Some(Level::WARN));
    }
}
