//! EC2's `Filter.N` semantics: a resource matches when, for every filter,
//! one of its values for that filter name matches one of the filter's
//! values (`*` and `?` wildcards). Tag filters (`tag:Key`, `tag-key`,
//! `tag-value`) work the same on every Describe action.

use std::collections::BTreeMap;

use model::Ec2Error;

use crate::params::Filter;

/// The checked filters of one Describe request.
pub struct Filters {
    filters: Vec<Filter>,
}

impl Filters {
    /// Checks the filter names against those the action knows.
    pub fn new(filters: Vec<Filter>, known: &[&str]) -> Result<Filters, Ec2Error> {
        for filter in &filters {
            let name = filter.name.as_str();
            let ok =
                known.contains(&name) || name.starts_with("tag:") || name == "tag-key" || name == "tag-value";
            if !ok {
                return Err(Ec2Error::InvalidParameterValue(format!(
                    "The filter '{name}' is invalid"
                )));
            }
        }
        Ok(Filters { filters })
    }

    /// Whether there are no filters.
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// Whether a resource matches: `field` gives its values for a filter
    /// name, `tags` its tags.
    pub fn matches(
        &self,
        mut field: impl FnMut(&str) -> Vec<String>,
        tags: Option<&BTreeMap<String, String>>,
    ) -> bool {
        self.filters.iter().all(|filter| {
            let values: Vec<String> = if let Some(key) = filter.name.strip_prefix("tag:") {
                tags.and_then(|t| t.get(key)).cloned().into_iter().collect()
            } else if filter.name == "tag-key" {
                tags.map(|t| t.keys().cloned().collect()).unwrap_or_default()
            } else if filter.name == "tag-value" {
                tags.map(|t| t.values().cloned().collect()).unwrap_or_default()
            } else {
                field(&filter.name)
            };
            values
                .iter()
                .any(|value| filter.values.iter().any(|pattern| glob(pattern, value)))
        })
    }
}

/// EC2's wildcard match: `*` any run, `?` any one character, `\` escapes.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                '\\' if pi + 1 < p.len() && p[pi + 1] == t[ti] => {
                    pi += 2;
                    ti += 1;
                    continue;
                }
                c if c == t[ti] && c != '\\' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_ec2() {
        assert!(glob("web*", "web-1"));
        assert!(glob("*", ""));
        assert!(glob("w?b", "web"));
        assert!(!glob("w?b", "weeb"));
        assert!(glob("*-1", "web-1"));
        assert!(glob("a\\*b", "a*b"));
        assert!(!glob("a\\*b", "axb"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exactly"));
    }

    #[test]
    fn all_filters_must_match_and_unknown_names_are_refused() {
        let f = |name: &str, values: &[&str]| Filter {
            name: name.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        assert!(Filters::new(vec![f("bogus", &["x"])], &["domain"]).is_err());
        let filters = Filters::new(
            vec![f("domain", &["vpc", "standard"]), f("tag:Name", &["web*"])],
            &["domain"],
        )
        .unwrap();
        let tags: BTreeMap<String, String> = [("Name".to_string(), "web-1".to_string())].into();
        assert!(filters.matches(|_| vec!["vpc".into()], Some(&tags)));
        assert!(!filters.matches(|_| vec!["vpc".into()], None));
        assert!(!filters.matches(|_| vec!["other".into()], Some(&tags)));
    }
}
