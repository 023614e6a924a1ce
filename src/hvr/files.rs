//! Which table (and which cycle) a file belongs to, from its name: HVR's `/RenameExpression` turned into a
//! pattern (`{hvr_tbl_name}` is the table; other `{...}` and `*` match within one path segment).

use regex::Regex;

use crate::error::{Error, Result};

/// A compiled file name pattern.
pub struct FilePattern {
    re: Regex,
}

impl FilePattern {
    /// Compiles a pattern such as `{hvr_integ_tstamp}-{hvr_tbl_name}.*`.
    pub fn new(pattern: &str) -> Result<Self> {
        let mut re = String::from("^");
        let mut rest = pattern;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('{') {
                let end = after.find('}').ok_or_else(|| {
                    Error::msg(format!(
                        "setting 'file_pattern' '{pattern}' has an unclosed {{"
                    ))
                })?;
                let name = &after[..end];
                re.push_str(match name {
                    "hvr_tbl_name" => "(?P<t>[^/]+?)",
                    "hvr_integ_tstamp" if !re.contains("(?P<c>") => "(?P<c>[^/]*?)",
                    _ => "[^/]*?",
                });
                rest = &after[end + 1..];
            } else if let Some(after) = rest.strip_prefix('*') {
                re.push_str("[^/]*");
                rest = after;
            } else {
                let c = rest.chars().next().expect("non-empty");
                re.push_str(&regex::escape(&c.to_string()));
                rest = &rest[c.len_utf8()..];
            }
        }
        re.push('$');
        let re = Regex::new(&re)
            .map_err(|e| Error::msg(format!("setting 'file_pattern' '{pattern}': {e}")))?;
        Ok(FilePattern { re })
    }

    /// The cycle a file name gives: its `{hvr_integ_tstamp}` part, when the pattern has one.
    pub fn cycle_of<'a>(&self, file: &'a str) -> Option<&'a str> {
        self.re
            .captures(file)
            .and_then(|c| c.name("c"))
            .map(|m| m.as_str())
    }

    /// The table name a file name gives, if it matches.
    pub fn table_of<'a>(&self, file: &'a str) -> Option<&'a str> {
        self.re
            .captures(file)
            .and_then(|c| c.name("t"))
            .map(|m| m.as_str())
    }
}

/// Orders cycle stamps: numbers of digits by value (fixed-width HVR stamps and plain counters
/// alike), anything else as text after them.
pub fn cycle_order(stamp: &str) -> (bool, usize, &str) {
    let digits = !stamp.is_empty() && stamp.bytes().all(|b| b.is_ascii_digit());
    let trimmed = if digits {
        stamp.trim_start_matches('0')
    } else {
        stamp
    };
    (!digits, if digits { trimmed.len() } else { 0 }, trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_takes_the_text_after_the_first_dash() {
        let p = FilePattern::new("{hvr_integ_tstamp}-{hvr_tbl_name}.*").unwrap();
        assert_eq!(p.table_of("20261122153000123-orders.csv"), Some("orders"));
        assert_eq!(
            p.table_of("20261122153000123-order_lines.csv.gz"),
            Some("order_lines")
        );
        assert_eq!(p.table_of("x-my-table.csv"), Some("my-table"));
        assert_eq!(p.table_of("orders.csv"), None);
        assert_eq!(p.table_of("dir/1-orders.csv"), None);
        assert_eq!(
            p.cycle_of("20261122153000123-orders.csv"),
            Some("20261122153000123")
        );
    }

    #[test]
    fn folder_patterns() {
        let p = FilePattern::new("{hvr_tbl_name}/{hvr_integ_tstamp}.csv").unwrap();
        assert_eq!(p.table_of("orders/20261122.csv"), Some("orders"));
        assert_eq!(p.table_of("20261122.csv"), None);
    }
}
