//! How the API commands print their answers: for people on a terminal (tables and sentences,
//! node names in natural order), and for scripts the API's JSON exactly as before, with
//! `--json` or whenever standard output is not a terminal.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use permafrost_api::{ChildKey, Health, KeyList, KeyRecord, SignResponse};
use serde::Serialize;

use crate::interval::{format_interval, format_span};

/// How a command prints its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The API's answer as pretty JSON, unchanged: for scripts.
    Json,
    /// Tables and sentences: for people.
    Human,
}

impl Format {
    /// JSON when `--json` asks for it or standard output is not a terminal; else for people.
    pub fn for_stdout(json: bool) -> Format {
        Format::choose(json, std::io::stdout().is_terminal())
    }

    fn choose(json: bool, terminal: bool) -> Format {
        if json || !terminal {
            Format::Json
        } else {
            Format::Human
        }
    }
}

/// Prints `value` on standard output in `format`: pretty JSON, or `human(value)`.
pub fn print<T: Serialize>(
    format: Format,
    value: &T,
    human: impl FnOnce(&T) -> String,
) -> anyhow::Result<ExitCode> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Format::Human => print!("{}", human(value)),
    }
    Ok(ExitCode::SUCCESS)
}

/// Where a column's cells sit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text.
    Left,
    /// Numbers.
    Right,
}

/// A table of text: columns as wide as their widest cell, two spaces apart, no trailing
/// spaces. Without a header it lays out `name  value` lines.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    align: Vec<Align>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers and alignments.
    pub fn new(columns: &[(&str, Align)]) -> Table {
        Table {
            header: columns.iter().map(|(name, _)| (*name).to_owned()).collect(),
            align: columns.iter().map(|(_, align)| *align).collect(),
            rows: Vec::new(),
        }
    }

    /// Indented `name  value` lines, the names aligned.
    pub fn fields(fields: &[(&str, String)]) -> String {
        let mut table = Table {
            header: Vec::new(),
            align: vec![Align::Left, Align::Left],
            rows: Vec::new(),
        };
        for (name, value) in fields {
            table.row(vec![format!("  {name}"), value.clone()]);
        }
        table.render()
    }

    /// Adds a row (missing cells are empty, extra ones are dropped).
    pub fn row(&mut self, mut cells: Vec<String>) {
        cells.resize(self.align.len(), String::new());
        self.rows.push(cells);
    }

    /// The table, one line per row after the header.
    pub fn render(&self) -> String {
        let lines: Vec<&Vec<String>> = std::iter::once(&self.header)
            .filter(|header| !header.is_empty())
            .chain(&self.rows)
            .collect();
        let widths: Vec<usize> = (0..self.align.len())
            .map(|column| {
                lines
                    .iter()
                    .filter_map(|line| line.get(column))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for line in lines {
            let mut text = String::new();
            for ((cell, width), align) in line.iter().zip(&widths).zip(&self.align) {
                if !text.is_empty() {
                    text.push_str("  ");
                }
                let pad = " ".repeat(width.saturating_sub(cell.chars().count()));
                match align {
                    Align::Left => {
                        text.push_str(cell);
                        text.push_str(&pad);
                    }
                    Align::Right => {
                        text.push_str(&pad);
                        text.push_str(cell);
                    }
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Sorts names with numbers in them as people do: the digits compare as numbers, so `node2`
/// comes before `node10`.
fn natural_key(name: &str) -> Vec<(String, u64)> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut digits = String::new();
    for c in name.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            if !digits.is_empty() {
                parts.push((
                    std::mem::take(&mut text),
                    digits.parse().unwrap_or(u64::MAX),
                ));
                digits.clear();
            }
            text.push(c);
        }
    }
    parts.push((text, digits.parse().unwrap_or(0)));
    parts
}

/// `names` in natural order, joined with `, `.
pub fn natural_list(names: &[String]) -> String {
    let mut sorted: Vec<&str> = names.iter().map(String::as_str).collect();
    sorted.sort_by_cached_key(|name| natural_key(name));
    sorted.join(", ")
}

/// A long hex string cut to its first 8 and last 6 digits, for tables.
fn shortened(hex: &str) -> String {
    let chars: Vec<char> = hex.chars().collect();
    if chars.len() <= 20 {
        return hex.to_owned();
    }
    let head: String = chars.iter().take(8).collect();
    let tail: String = chars.iter().skip(chars.len() - 6).collect();
    format!("{head}…{tail}")
}

/// The health for people: one line per node, in natural order of their names.
pub fn health_table(health: &Health) -> String {
    let mut nodes: Vec<&permafrost_api::NodeHealth> = health.nodes.iter().collect();
    nodes.sort_by_cached_key(|node| natural_key(&node.name));
    let mut table = Table::new(&[
        ("NODE", Align::Left),
        ("HEALTHY", Align::Left),
        ("CONNECTED", Align::Left),
        ("ROUND TRIP", Align::Right),
        ("LAST OK", Align::Right),
        ("PROBE ERROR", Align::Left),
    ]);
    let yes_no = |b: bool| if b { "yes" } else { "NO" }.to_owned();
    for node in nodes {
        table.row(vec![
            node.name.clone(),
            yes_no(node.healthy),
            yes_no(node.connected),
            node.last_round_trip_us.map_or_else(
                || "-".to_owned(),
                |us| format!("{:.2} ms", us as f64 / 1000.0),
            ),
            node.last_probe_age_ms.map_or_else(
                || "never".to_owned(),
                |ms| format!("{:.1} s ago", ms as f64 / 1000.0),
            ),
            node.probe_error.clone().unwrap_or_default(),
        ]);
    }
    format!(
        "coordinator {} · network {}\n{}",
        health.status,
        health.network_id,
        table.render()
    )
}

/// Every key for people: one line per key, in natural order of their ids, the committee in
/// natural order and the public key shortened (`keys show ID` prints it whole).
pub fn key_list_table(list: &KeyList) -> String {
    if list.keys.is_empty() {
        return "no keys\n".to_owned();
    }
    let mut keys: Vec<&KeyRecord> = list.keys.iter().collect();
    keys.sort_by_cached_key(|key| natural_key(&key.key_id));
    let mut table = Table::new(&[
        ("KEY ID", Align::Left),
        ("CURVE", Align::Left),
        ("THRESHOLD", Align::Left),
        ("EPOCH", Align::Right),
        ("PUBLIC KEY", Align::Left),
        ("COMMITTEE", Align::Left),
    ]);
    for key in keys {
        table.row(vec![
            key.key_id.clone(),
            key.curve.as_str().to_owned(),
            format!("{} of {}", key.threshold, key.nodes.len()),
            key.epoch.to_string(),
            shortened(&key.public_key),
            natural_list(&key.nodes),
        ]);
    }
    table.render()
}

/// One key for people: `headline` (`key`, `created key`, …), its id, curve, threshold and
/// epoch in a sentence, then the committee in natural order and the whole public key, and its
/// rotation policy if it has one.
pub fn key_record(headline: &str, key: &KeyRecord) -> String {
    let mut fields = vec![
        ("committee", natural_list(&key.nodes)),
        ("public key", key.public_key.clone()),
        ("network", key.network_id.clone()),
        ("package digest", key.public_key_package_digest.clone()),
        ("chain code", key.chain_code.clone()),
        ("xpub", key.xpub.clone().unwrap_or_else(|| "-".into())),
    ];
    if let Some(rotation) = &key.rotation {
        fields.push((
            "rotation",
            format!(
                "every {}, next due {}",
                format_interval(rotation.every_secs),
                permafrost_node::utc(rotation.next_ms)
            ),
        ));
    }
    format!(
        "{headline} {} ({}): {} of {}, epoch {}\n{}",
        key.key_id,
        key.curve,
        key.threshold,
        key.nodes.len(),
        key.epoch,
        Table::fields(&fields)
    )
}

/// A key's rotation policy for people: a sentence, then the committee it keeps and when the
/// next refresh is due and the last one committed; or that it has none.
pub fn rotation(key: &KeyRecord) -> String {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    rotation_at(key, now_ms)
}

/// [`rotation`] at `now_ms` (milliseconds since the Unix epoch).
fn rotation_at(key: &KeyRecord, now_ms: u64) -> String {
    let Some(rotation) = &key.rotation else {
        return format!("key {}: no rotation policy\n", key.key_id);
    };
    let when = |ms: u64| {
        let relative = if ms >= now_ms {
            format!("in {}", format_span((ms - now_ms) / 1000))
        } else {
            format!("{} ago", format_span((now_ms - ms) / 1000))
        };
        format!("{} ({relative})", permafrost_node::utc(ms))
    };
    let mut fields = vec![
        ("committee", natural_list(&rotation.nodes)),
        ("next", when(rotation.next_ms)),
        (
            "last",
            rotation.last_ms.map_or_else(|| "never".into(), when),
        ),
    ];
    let sorted = |names: &[String]| {
        let mut names = names.to_vec();
        names.sort();
        names
    };
    if rotation.threshold != key.threshold || sorted(&rotation.nodes) != sorted(&key.nodes) {
        fields.push((
            "stale",
            format!(
                "the key is now {} of {}: every member refuses these refreshes; set the policy again",
                key.threshold,
                key.nodes.len()
            ),
        ));
    }
    format!(
        "key {}: shares refreshed every {}, keeping {} of {}\n{}",
        key.key_id,
        format_interval(rotation.every_secs),
        rotation.threshold,
        rotation.nodes.len(),
        Table::fields(&fields)
    )
}

/// A child key for people: its key and path, then the public key (and the internal key for
/// taproot).
pub fn child_key(child: &ChildKey) -> String {
    let mut fields = vec![("public key", child.public_key.clone())];
    if let Some(internal) = &child.internal_key {
        fields.push(("internal key", internal.clone()));
    }
    format!(
        "key {} at {}\n{}",
        child.key_id,
        child.path,
        Table::fields(&fields)
    )
}

/// A signature for people: who signed (natural order) at which epoch, the signature and the
/// public key it verifies under, and the culprits if any member cheated.
pub fn signature(signed: &SignResponse) -> String {
    let mut fields = vec![
        ("signature", signed.signature.clone()),
        ("public key", signed.public_key.clone()),
    ];
    if signed.path != "m" {
        fields.push(("path", signed.path.clone()));
    }
    if !signed.culprits.is_empty() {
        fields.push((
            "culprits",
            format!(
                "{} (sent shares that did not verify; left out)",
                natural_list(&signed.culprits)
            ),
        ));
    }
    format!(
        "signed by {} at epoch {}\n{}",
        natural_list(&signed.signers),
        signed.epoch,
        Table::fields(&fields)
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use permafrost_api::Curve;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|n| (*n).to_owned()).collect()
    }

    fn node(name: &str, healthy: bool) -> permafrost_api::NodeHealth {
        permafrost_api::NodeHealth {
            name: name.into(),
            peer_id: format!("12D3KooW{name}"),
            connected: true,
            healthy,
            last_round_trip_us: healthy.then_some(1_250),
            last_probe_age_ms: Some(if healthy { 400 } else { 4_100 }),
            probe_error: (!healthy).then(|| "no answer within 3000 ms".to_owned()),
        }
    }

    fn key(id: &str, nodes: &[&str]) -> KeyRecord {
        KeyRecord {
            key_id: id.into(),
            curve: Curve::Secp256k1Tr,
            public_key: format!("02{}", "ab".repeat(32)),
            network_id: "custody-1".into(),
            threshold: 2,
            nodes: names(nodes),
            epoch: 3,
            public_key_package_digest: "cd".repeat(32),
            chain_code: "ef".repeat(32),
            xpub: Some("xpub661MyMwAqRbc".into()),
            rotation: None,
        }
    }

    /// A policy of every 24 h on `nodes`, 2 of them, next due at 2023-11-14T22:13:20Z.
    fn policy(nodes: &[&str]) -> permafrost_api::RotationRecord {
        permafrost_api::RotationRecord {
            every_secs: 86_400,
            last_ms: None,
            next_ms: 1_700_000_000_000,
            threshold: 2,
            nodes: names(nodes),
        }
    }

    /// The first word of each line after the header.
    fn first_column(table: &str) -> Vec<&str> {
        table
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().next().unwrap())
            .collect()
    }

    #[test]
    fn only_a_terminal_without_json_gets_the_human_form() {
        assert_eq!(Format::choose(false, true), Format::Human);
        assert_eq!(Format::choose(true, true), Format::Json);
        assert_eq!(Format::choose(false, false), Format::Json);
        assert_eq!(Format::choose(true, false), Format::Json);
    }

    #[test]
    fn natural_order_compares_numbers_as_numbers() {
        let mut list = names(&["node10", "node9", "node1", "node2", "alpha", "node02b"]);
        list.sort_by_cached_key(|n| natural_key(n));
        assert_eq!(
            list,
            ["alpha", "node1", "node2", "node02b", "node9", "node10"]
        );
        assert_eq!(
            natural_list(&names(&["node2", "node10", "node9"])),
            "node2, node9, node10"
        );
    }

    #[test]
    fn a_table_aligns_its_columns_and_has_no_trailing_spaces() {
        let mut table = Table::new(&[
            ("NAME", Align::Left),
            ("N", Align::Right),
            ("X", Align::Left),
        ]);
        table.row(names(&["a", "7", ""]));
        table.row(names(&["longer", "1234", "end"]));
        assert_eq!(
            table.render(),
            "NAME       N  X\na          7\nlonger  1234  end\n"
        );
        assert_eq!(
            Table::fields(&[("a", "1".into()), ("bcd", "2".into())]),
            "  a    1\n  bcd  2\n"
        );
    }

    #[test]
    fn the_health_table_lists_nodes_in_natural_order() {
        let health = Health {
            status: "ok".into(),
            network_id: "custody-1".into(),
            nodes: vec![
                node("node10", true),
                node("node2", false),
                node("node1", true),
                node("node9", true),
            ],
        };
        let table = health_table(&health);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 6, "{table}");
        assert_eq!(lines[0], "coordinator ok · network custody-1");
        assert!(lines[1].starts_with("NODE"), "{table}");
        assert_eq!(
            first_column(&lines[1..].join("\n")),
            ["node1", "node2", "node9", "node10"]
        );
        assert!(
            lines[2].contains("yes") && lines[2].contains("1.25 ms"),
            "{table}"
        );
        assert!(
            lines[3].contains("NO") && lines[3].contains("4.1 s ago"),
            "{table}"
        );
        assert!(lines[3].ends_with("no answer within 3000 ms"), "{table}");
    }

    #[test]
    fn the_key_list_is_a_table_in_natural_order() {
        let list = KeyList {
            keys: vec![
                key("k10", &["node10", "node2", "node9"]),
                key("k9", &["node3", "node1"]),
            ],
        };
        let table = key_list_table(&list);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert_eq!(
            lines[0]
                .split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect::<Vec<_>>(),
            [
                "KEY ID",
                "CURVE",
                "THRESHOLD",
                "EPOCH",
                "PUBLIC KEY",
                "COMMITTEE"
            ]
        );
        assert_eq!(first_column(&table), ["k9", "k10"]);
        assert!(lines[1].ends_with("node1, node3"), "{table}");
        assert!(lines[2].ends_with("node2, node9, node10"), "{table}");
        assert!(lines[2].contains("secp256k1-tr"), "{table}");
        assert!(lines[2].contains("2 of 3"), "{table}");
        assert!(lines[2].contains("02ababab…ababab"), "{table}");
        assert!(!lines[2].contains(&"ab".repeat(32)), "{table}");
        assert_eq!(key_list_table(&KeyList { keys: Vec::new() }), "no keys\n");
    }

    #[test]
    fn a_key_is_a_sentence_and_its_fields() {
        let text = key_record("created key", &key("k-1", &["node10", "node2"]));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "created key k-1 (secp256k1-tr): 2 of 2, epoch 3");
        assert_eq!(lines[1], "  committee       node2, node10");
        assert_eq!(lines[2], format!("  public key      02{}", "ab".repeat(32)));
        assert_eq!(lines[3], "  network         custody-1");
        assert_eq!(lines[4], format!("  package digest  {}", "cd".repeat(32)));
        assert_eq!(lines[5], format!("  chain code      {}", "ef".repeat(32)));
        assert_eq!(lines[6], "  xpub            xpub661MyMwAqRbc");
        assert_eq!(lines.len(), 7, "{text}");

        // With a rotation policy: one more line, when it runs.
        let mut rotated = key("k-1", &["node10", "node2"]);
        rotated.rotation = Some(policy(&["node2", "node10"]));
        let text = key_record("key", &rotated);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 8, "{text}");
        assert_eq!(lines[6], "  xpub            xpub661MyMwAqRbc");
        assert_eq!(
            lines[7],
            "  rotation        every 1d, next due 2023-11-14T22:13:20.000Z"
        );
    }

    #[test]
    fn a_rotation_says_when_it_runs_or_that_there_is_none() {
        let mut key = key("k-1", &["node10", "node2"]);
        assert_eq!(rotation_at(&key, 0), "key k-1: no rotation policy\n");

        key.rotation = Some(policy(&["node10", "node2"]));
        let now = 1_700_000_000_000 - 3_598_000;
        let text = rotation_at(&key, now);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "key k-1: shares refreshed every 1d, keeping 2 of 2"
        );
        assert_eq!(lines[1], "  committee  node2, node10");
        assert_eq!(
            lines[2],
            "  next       2023-11-14T22:13:20.000Z (in 59m 58s)"
        );
        assert_eq!(lines[3], "  last       never");
        assert_eq!(lines.len(), 4, "{text}");

        // After a refresh (and past due): times in the past read "ago".
        if let Some(rotation) = key.rotation.as_mut() {
            rotation.last_ms = Some(1_700_000_000_000 - 86_400_000);
        }
        let text = rotation_at(&key, 1_700_000_000_000 + 90_000);
        assert!(text.contains("(1m 30s ago)"), "{text}");
        assert!(
            text.contains("  last       2023-11-13T22:13:20.000Z (1d ago)"),
            "{text}"
        );

        // Reshared to another threshold since: the policy no longer runs, and says so.
        key.threshold = 1;
        let text = rotation_at(&key, now);
        assert!(
            text.lines()
                .any(|l| l.starts_with("  stale") && l.contains("the key is now 1 of 2")),
            "{text}"
        );
    }

    #[test]
    fn a_signature_names_its_signers_in_natural_order_and_any_culprits() {
        let mut signed = SignResponse {
            signature: "ef".repeat(64),
            public_key: "02ab".into(),
            path: "m".into(),
            epoch: 1,
            signers: names(&["node10", "node9", "node1"]),
            culprits: Vec::new(),
        };
        let text = signature(&signed);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "signed by node1, node9, node10 at epoch 1");
        assert_eq!(lines[1], format!("  signature   {}", "ef".repeat(64)));
        assert_eq!(lines[2], "  public key  02ab");
        assert_eq!(lines.len(), 3, "{text}");

        signed.culprits = names(&["node12", "node3"]);
        let text = signature(&signed);
        assert!(
            text.lines()
                .any(|l| l.starts_with("  culprits") && l.contains("node3, node12 (sent shares")),
            "{text}"
        );
    }
}
