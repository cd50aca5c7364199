//! Figures, targets and percentiles, and the two forms of output: a human table and one JSON
//! line per scenario. Pass or miss is computed here from the measured numbers.

use serde_json::{Map, Value, json};

use crate::procs::Env;

#[derive(Debug, Clone, Copy)]
pub enum Bound {
    AtMost,
    AtLeast,
}

pub struct Target {
    pub name: String,
    pub measured: f64,
    pub limit: f64,
    pub bound: Bound,
    pub unit: &'static str,
}

impl Target {
    pub fn pass(&self) -> bool {
        self.measured.is_finite()
            && match self.bound {
                Bound::AtMost => self.measured <= self.limit,
                Bound::AtLeast => self.measured >= self.limit,
            }
    }

    fn op(&self) -> &'static str {
        match self.bound {
            Bound::AtMost => "<=",
            Bound::AtLeast => ">=",
        }
    }
}

pub struct Report {
    scenario: &'static str,
    /// Human rows: label and shown value, in order.
    rows: Vec<(String, String)>,
    figures: Map<String, Value>,
    targets: Vec<Target>,
    notes: Vec<String>,
}

impl Report {
    pub fn new(scenario: &'static str) -> Self {
        Report {
            scenario,
            rows: Vec::new(),
            figures: Map::new(),
            targets: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// A figure: `key` in the JSON line, `label` and `shown` in the table.
    pub fn figure(&mut self, key: &str, value: impl Into<Value>, label: &str, shown: String) {
        self.figures.insert(key.to_owned(), value.into());
        self.rows.push((label.to_owned(), shown));
    }

    /// A figure for the JSON line only (e.g. configuration), not the table.
    pub fn detail(&mut self, key: &str, value: impl Into<Value>) {
        self.figures.insert(key.to_owned(), value.into());
    }

    pub fn target(
        &mut self,
        name: impl Into<String>,
        measured: f64,
        bound: Bound,
        limit: f64,
        unit: &'static str,
    ) {
        self.targets.push(Target {
            name: name.into(),
            measured,
            limit,
            bound,
            unit,
        });
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    pub fn print_table(&self) {
        println!("## {}", self.scenario);
        let width = self
            .rows
            .iter()
            .map(|(label, _)| label.len())
            .chain(self.targets.iter().map(|t| t.name.len() + 8))
            .max()
            .unwrap_or(0);
        for (label, shown) in &self.rows {
            println!("  {label:<width$}  {shown}");
        }
        for target in &self.targets {
            let verdict = if target.pass() { "met" } else { "MISSED" };
            let label = format!("target {}", target.name);
            println!(
                "  {label:<width$}  {} {} {} {}  {verdict}",
                round(target.measured),
                target.op(),
                round(target.limit),
                target.unit,
            );
        }
        for note in &self.notes {
            println!("  note: {note}");
        }
        println!();
    }

    pub fn json_line(&self, smoke: bool, env: &Env) -> String {
        let targets: Vec<Value> = self
            .targets
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "measured": round(t.measured),
                    "op": t.op(),
                    "limit": t.limit,
                    "unit": t.unit,
                    "pass": t.pass(),
                })
            })
            .collect();
        let pass = if self.targets.is_empty() {
            Value::Null
        } else {
            Value::Bool(self.targets.iter().all(Target::pass))
        };
        let rest = json!({
            "smoke": smoke,
            "pass": pass,
            "targets": targets,
            "figures": self.figures,
            "notes": self.notes,
            "machine": env.context(),
        });
        // `scenario` first, so a reader (or `grep '^{"scenario":"unary"'`) finds the line.
        let rest = rest.to_string();
        format!(
            "{{\"scenario\":{},{}",
            Value::from(self.scenario),
            &rest[1..]
        )
    }
}

/// Rounds to a precision that suits the magnitude, for display and JSON.
pub fn round(value: f64) -> f64 {
    if !value.is_finite() {
        return value;
    }
    let digits = if value.abs() >= 100.0 {
        1
    } else if value.abs() >= 1.0 {
        2
    } else {
        4
    };
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// Nearest-rank percentile of `sorted` (ascending); NaN when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

pub fn median(values: &[f64]) -> f64 {
    percentile(&sorted(values.to_vec()), 50.0)
}

/// NaN-safe JSON number (serde_json turns NaN into null).
pub fn num(value: f64) -> Value {
    json!(round(value))
}
