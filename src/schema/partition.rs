//! Partition expressions as a setting names them (`region`, `year(created_at)`, ...): the
//! column each derives and the text it is recorded as. What a partitioned table does with
//! them is in `table::partition`.

/// What a partition column holds of its source column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The column's own value (`region`).
    Value,
    /// The year of a date or timestamp, as an integer (`year(created_at)` → `created_at_year`).
    Year,
    /// Year and month as text `YYYY-MM` (`month(created_at)` → `created_at_month`).
    Month,
    /// The date (`day(created_at)` → `created_at_day`).
    Day,
}

/// One partition expression: a part of a source column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartExpr {
    /// The data column it is computed from.
    pub source: String,
    /// What it takes of it.
    pub part: Part,
}

impl PartExpr {
    /// Parses `col`, `year(col)`, `month(col)` or `day(col)`.
    pub fn parse(text: &str) -> Option<PartExpr> {
        let text = text.trim();
        if let Some((f, rest)) = text.split_once('(') {
            let source = rest.strip_suffix(')')?.trim();
            let part = match f.trim().to_ascii_lowercase().as_str() {
                "year" => Part::Year,
                "month" => Part::Month,
                "day" | "date" => Part::Day,
                _ => return None,
            };
            return (!source.is_empty()).then(|| PartExpr {
                source: source.to_string(),
                part,
            });
        }
        let plain = !text.is_empty() && !text.contains([')', ',', ';', ':']);
        plain.then(|| PartExpr {
            source: text.to_string(),
            part: Part::Value,
        })
    }

    /// The partition column's name.
    pub fn column(&self) -> String {
        match self.part {
            Part::Value => self.source.clone(),
            Part::Year => format!("{}_year", self.source),
            Part::Month => format!("{}_month", self.source),
            Part::Day => format!("{}_day", self.source),
        }
    }

    /// The expression as written.
    pub fn text(&self) -> String {
        match self.part {
            Part::Value => self.source.clone(),
            Part::Year => format!("year({})", self.source),
            Part::Month => format!("month({})", self.source),
            Part::Day => format!("day({})", self.source),
        }
    }

    /// Whether the column is computed from another (a date part).
    pub fn derived(&self) -> bool {
        self.part != Part::Value
    }
}

/// Parses a comma list of expressions; the expression that does not parse as the error.
pub fn parse_list(text: &str) -> std::result::Result<Vec<PartExpr>, String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in text.chars().chain(std::iter::once(',')) {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        if c == ',' && depth == 0 {
            if !cur.trim().is_empty() {
                out.push(PartExpr::parse(&cur).ok_or_else(|| cur.trim().to_string())?);
            }
            cur.clear();
        } else {
            cur.push(c);
        }
    }
    Ok(out)
}

/// The text recorded for `spec`.
pub fn spec_text(spec: &[PartExpr]) -> String {
    spec.iter()
        .map(PartExpr::text)
        .collect::<Vec<_>>()
        .join(",")
}
