/// Statement keywords [`operation_of`] reports; anything else is `other`.
const KEYWORDS: &[&str] = &[
    "select", "insert", "update", "delete", "with", "begin", "commit", "rollback", "create",
    "alter", "drop", "truncate", "values", "explain", "set", "show", "pragma", "copy", "call",
    "merge", "upsert", "replace", "lock", "vacuum", "analyze",
];

/// The first SQL keyword of `sql`, lower-cased, from a bounded list (`select`, `insert`,
/// `update`, `delete`, `with`, `begin`, `commit`, `create`, …), else `other`: an operation
/// name for metrics and spans that cannot grow the label set, whatever the statement.
///
/// Leading white space and `--` / `/* */` comments are skipped.
///
/// ```
/// use truss::sql::operation_of;
///
/// assert_eq!(operation_of("SELECT id FROM users WHERE id = $1"), "select");
/// assert_eq!(operation_of("  -- upsert\n INSERT INTO t VALUES (1)"), "insert");
/// assert_eq!(operation_of("/* hint */ with x as (select 1) select * from x"), "with");
/// assert_eq!(operation_of("frobnicate everything"), "other");
/// ```
pub fn operation_of(sql: &str) -> &'static str {
    let mut rest = sql.trim_start();
    loop {
        if let Some(after) = rest.strip_prefix("--") {
            rest = after
                .split_once('\n')
                .map_or("", |(_, next)| next)
                .trim_start();
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after
                .split_once("*/")
                .map_or("", |(_, next)| next)
                .trim_start();
        } else {
            break;
        }
    }
    let word = rest
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or_default();
    KEYWORDS
        .iter()
        .find(|k| k.eq_ignore_ascii_case(word))
        .copied()
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::operation_of;

    #[test]
    fn first_keyword_or_other() {
        assert_eq!(operation_of(""), "other");
        assert_eq!(operation_of("Update t SET x = 1"), "update");
        assert_eq!(operation_of("delete\nfrom t"), "delete");
        assert_eq!(operation_of("(select 1)"), "other");
        assert_eq!(operation_of("-- only a comment"), "other");
        assert_eq!(operation_of("/* unterminated"), "other");
        assert_eq!(operation_of("selection"), "other");
    }
}
