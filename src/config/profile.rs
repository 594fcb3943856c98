//! Pure reader of the target profile (`/etc/initagent/config.toml`): TOML text in, a flat
//! list of `key = value` entries out. Nested tables flatten with dots (`[net] iface = "x"`
//! is `net.iface`, the same spelling as `initagent.net.iface=` on the command line).
//! Typing and validation happen in the key table, exactly as for command-line values.

use super::RawValue;

/// Largest profile accepted; a real one is a few hundred bytes.
pub const MAX_PROFILE_BYTES: usize = 256 * 1024;

/// Parses profile text into flat entries, sorted by key (each key is independent).
pub fn parse(text: &str) -> Result<Vec<(String, RawValue)>, String> {
    if text.len() > MAX_PROFILE_BYTES {
        return Err(format!(
            "{} bytes is larger than the {MAX_PROFILE_BYTES}-byte limit",
            text.len()
        ));
    }
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| e.to_string().trim().replace('\n', " "))?;
    let mut entries = Vec::new();
    flatten("", &table, &mut entries)?;
    Ok(entries)
}

fn flatten(
    prefix: &str,
    table: &toml::Table,
    out: &mut Vec<(String, RawValue)>,
) -> Result<(), String> {
    for (key, value) in table {
        let name = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let raw = match value {
            toml::Value::String(s) => RawValue::Text(s.clone()),
            toml::Value::Integer(i) => RawValue::Text(i.to_string()),
            toml::Value::Float(f) => RawValue::Text(f.to_string()),
            toml::Value::Boolean(b) => RawValue::Text(b.to_string()),
            toml::Value::Array(items) => {
                let mut list = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        toml::Value::String(s) => list.push(s.clone()),
                        toml::Value::Integer(i) => list.push(i.to_string()),
                        _ => {
                            return Err(format!("{name}: lists may hold only strings and numbers"))
                        }
                    }
                }
                RawValue::List(list)
            }
            toml::Value::Table(inner) => {
                flatten(&name, inner, out)?;
                continue;
            }
            toml::Value::Datetime(_) => return Err(format!("{name}: dates are not used")),
        };
        out.push((name, raw));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_and_nested_entries() {
        let entries = parse(
            "log = \"debug\"\nreboot_delay = 5\n[net]\niface = \"eth0\"\nlinks = [\"a\", \"b\"]\n",
        )
        .unwrap();
        assert_eq!(
            entries,
            vec![
                ("log".into(), RawValue::Text("debug".into())),
                ("net.iface".into(), RawValue::Text("eth0".into())),
                (
                    "net.links".into(),
                    RawValue::List(vec!["a".into(), "b".into()])
                ),
                ("reboot_delay".into(), RawValue::Text("5".into())),
            ]
        );
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(parse("log = ").is_err());
        assert!(parse("x = [{a = 1}]").unwrap_err().contains("x"));
        assert!(parse(&"#".repeat(MAX_PROFILE_BYTES + 1)).is_err());
    }
}
