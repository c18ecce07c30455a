//! Results: one JSON line per phase on stdout (for machines), then a Markdown table of all
//! phases (for docs/benchmarks.md), and, when a peer ran too, a table of Belfry / peer for the
//! headline figures of each phase.

use serde::Serialize;

/// A phase result that can be printed.
pub trait Row: Serialize {
    /// Column name → cell, in table order.
    fn cells(&self) -> Vec<(&'static str, String)>;

    /// False when the phase lost, duplicated or reordered notifications, or failed requests or
    /// connections.
    fn is_clean(&self) -> bool;

    /// The server's short name (`belfry`, `fastapi`).
    fn server(&self) -> &str;

    /// What the phase measured, without the server: rows of different servers with the same
    /// phase are compared.
    fn phase(&self) -> String;

    /// The figures to compare between servers.
    fn headline(&self) -> Vec<(&'static str, Option<f64>, Better)>;
}

/// Which way a figure is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// More is better (rates).
    Higher,
    /// Less is better (latency, memory).
    Lower,
}

/// Prints each row as a JSON line, then all rows as one Markdown table, then the comparison
/// when more than one server ran.
pub fn emit<R: Row>(rows: &[R]) -> anyhow::Result<()> {
    for row in rows {
        println!("{}", serde_json::to_string(row)?);
    }
    print!("{}", markdown(rows));
    print!("{}", comparison(rows));
    Ok(())
}

/// Belfry / peer for every headline figure of every phase both ran: the figures side by side
/// and how many times better Belfry did (above 1: Belfry better). Empty when only one server
/// ran.
pub fn comparison<R: Row>(rows: &[R]) -> String {
    let mut out = String::new();
    for peer in rows.iter().filter(|r| r.server() != "belfry") {
        let phase = peer.phase();
        let Some(belfry) = rows
            .iter()
            .find(|r| r.server() == "belfry" && r.phase() == phase)
        else {
            continue;
        };
        if out.is_empty() {
            out.push_str("\n| phase | figure | belfry | peer | belfry advantage |\n");
            out.push_str("| --- | --- | --- | --- | --- |\n");
        }
        for ((name, ours, better), (_, theirs, _)) in
            belfry.headline().into_iter().zip(peer.headline())
        {
            let cell = |v: Option<f64>| v.map_or("?".into(), figure);
            let advantage = match (ours, theirs, better) {
                (Some(a), Some(b), Better::Higher) if b > 0.0 => times(a / b),
                (Some(a), Some(b), Better::Lower) if a > 0.0 => times(b / a),
                _ => "?".into(),
            };
            out.push_str(&format!(
                "| {phase} | {name} | {} | {} ({}) | {advantage} |\n",
                cell(ours),
                cell(theirs),
                peer.server()
            ));
        }
    }
    out
}

/// A ratio: "40×", "3.25×", "0.03×".
fn times(x: f64) -> String {
    if x >= 10.0 {
        format!("{x:.0}×")
    } else {
        format!("{x:.2}×")
    }
}

/// A figure with a precision that suits its size.
fn figure(v: f64) -> String {
    if v >= 1000.0 { rate(v) } else { ms(v) }
}

/// The rows as a Markdown table (empty when there are none).
pub fn markdown<R: Row>(rows: &[R]) -> String {
    let Some(first) = rows.first() else {
        return String::new();
    };
    let names: Vec<&str> = first.cells().iter().map(|(name, _)| *name).collect();
    let mut out = String::new();
    out.push_str(&format!("\n| {} |\n", names.join(" | ")));
    out.push_str(&format!(
        "|{}\n",
        names.iter().map(|_| " --- |").collect::<String>()
    ));
    for row in rows {
        let cells: Vec<String> = row.cells().into_iter().map(|(_, cell)| cell).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

/// A count with thousands separators: 12345 → "12 345" (a thin space would not survive every
/// terminal; a plain space does).
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// A rate, rounded to a whole number with separators.
pub fn rate(per_s: f64) -> String {
    count(per_s.max(0.0).round() as u64)
}

/// CPU use in cores as a percentage of one core ("135%"), or "?" when unknown.
pub fn cores(value: Option<f64>) -> String {
    value.map_or("?".into(), |c| format!("{:.0}%", c * 100.0))
}

/// Milliseconds with a precision that suits their size.
pub fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Example {
        a: u64,
    }

    impl Row for Example {
        fn cells(&self) -> Vec<(&'static str, String)> {
            vec![("a", count(self.a)), ("twice", count(self.a * 2))]
        }

        fn is_clean(&self) -> bool {
            true
        }

        fn server(&self) -> &str {
            if self.a == 1 { "fastapi" } else { "belfry" }
        }

        fn phase(&self) -> String {
            "p".into()
        }

        fn headline(&self) -> Vec<(&'static str, Option<f64>, Better)> {
            vec![
                ("rate", Some(self.a as f64), Better::Higher),
                ("ms", Some(self.a as f64), Better::Lower),
            ]
        }
    }

    #[test]
    fn the_comparison_pairs_phases_and_says_which_way_is_better() {
        let text = comparison(&[Example { a: 40 }, Example { a: 1 }]);
        let lines: Vec<&str> = text.trim().lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert_eq!(lines[2], "| p | rate | 40.0 | 1.00 (fastapi) | 40× |");
        assert_eq!(lines[3], "| p | ms | 40.0 | 1.00 (fastapi) | 0.03× |");
        assert!(comparison(&[Example { a: 40 }]).is_empty());
    }

    #[test]
    fn tables_have_a_header_a_rule_and_one_line_per_row() {
        let text = markdown(&[Example { a: 1500 }, Example { a: 2 }]);
        let lines: Vec<&str> = text.trim().lines().collect();
        assert_eq!(lines[0], "| a | twice |");
        assert_eq!(lines[1], "| --- | --- |");
        assert_eq!(lines[2], "| 1 500 | 3 000 |");
        assert_eq!(lines[3], "| 2 | 4 |");
    }

    #[test]
    fn counts_group_thousands() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1 000");
        assert_eq!(count(1234567), "1 234 567");
    }
}
