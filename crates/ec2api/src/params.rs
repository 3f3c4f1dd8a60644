//! EC2's Query parameters: a flat list of `Name=value` pairs whose names
//! encode lists and structures with dots and 1-based indexes
//! (`IpPermissions.1.IpRanges.2.CidrIp`, `Filter.1.Value.3`). This module
//! decodes them into a view that reads those shapes; nothing here knows
//! any action.

use std::collections::BTreeMap;

use model::Ec2Error;

/// The parameters of one request (or one structure inside it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    values: BTreeMap<String, String>,
}

/// One `Filter.N`: a name and its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// `Filter.N.Name`.
    pub name: String,
    /// `Filter.N.Value.M`, in order.
    pub values: Vec<String>,
}

impl Params {
    /// Decodes `application/x-www-form-urlencoded` text (a query string or a
    /// form body). A name given twice keeps its last value.
    pub fn parse(encoded: &[u8]) -> Params {
        let mut params = Params::default();
        params.extend_from(encoded);
        params
    }

    /// Adds the pairs of another encoded text (e.g. the body after the query).
    pub fn extend_from(&mut self, encoded: &[u8]) {
        for (name, value) in form_urlencoded::parse(encoded) {
            self.values.insert(name.into_owned(), value.into_owned());
        }
    }

    /// Builds parameters from pairs (for tests and the load generator).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Params {
        Params {
            values: pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// Every pair, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether no parameter is present.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// A parameter's value, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// A parameter that must be present and non-empty.
    pub fn required(&self, name: &str) -> Result<&str, Ec2Error> {
        match self.get(name) {
            Some(value) if !value.is_empty() => Ok(value),
            _ => Err(Ec2Error::MissingParameter(name.to_string())),
        }
    }

    /// A boolean parameter (`true`/`false`, any case); absent is `false`.
    pub fn flag(&self, name: &str) -> Result<bool, Ec2Error> {
        match self.get(name) {
            None => Ok(false),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") || v.is_empty() => Ok(false),
            Some(v) => Err(Ec2Error::InvalidParameterValue(format!(
                "Invalid value '{v}' for {name}: expecting true or false"
            ))),
        }
    }

    /// An integer parameter, if present.
    pub fn int(&self, name: &str) -> Result<Option<i64>, Ec2Error> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v.trim().parse::<i64>().map(Some).map_err(|_| {
                Ec2Error::InvalidParameterValue(format!("Invalid value '{v}' for {name}: not an integer"))
            }),
        }
    }

    /// The values of a list `Name.1`, `Name.2`, … in index order (gaps allowed).
    pub fn list(&self, name: &str) -> Vec<String> {
        let prefix = format!("{name}.");
        let mut items: Vec<(u32, &String)> = self
            .values
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(k, v)| k[prefix.len()..].parse::<u32>().ok().map(|i| (i, v)))
            .collect();
        items.sort_by_key(|(i, _)| *i);
        items.into_iter().map(|(_, v)| v.clone()).collect()
    }

    /// The structures of a list `Name.N.Field…`, each as its own `Params`
    /// holding `Field…`, in index order.
    pub fn structs(&self, name: &str) -> Vec<Params> {
        let prefix = format!("{name}.");
        let mut by_index: BTreeMap<u32, Params> = BTreeMap::new();
        for (key, value) in self
            .values
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
        {
            let rest = &key[prefix.len()..];
            let Some((index, field)) = rest.split_once('.') else {
                continue;
            };
            let Ok(index) = index.parse::<u32>() else { continue };
            by_index
                .entry(index)
                .or_default()
                .values
                .insert(field.to_string(), value.clone());
        }
        by_index.into_values().collect()
    }

    /// `Filter.N.Name` / `Filter.N.Value.M`; a filter without a name is refused.
    pub fn filters(&self) -> Result<Vec<Filter>, Ec2Error> {
        self.structs("Filter")
            .into_iter()
            .map(|f| {
                let name = f
                    .required("Name")
                    .map_err(|_| Ec2Error::MissingParameter("Filter.N.Name".into()))?;
                Ok(Filter {
                    name: name.to_string(),
                    values: f.list("Value"),
                })
            })
            .collect()
    }

    /// `TagSpecification.N` entries for `resource_type`: their `Tag.M.Key`/`Value`.
    pub fn tag_specifications(&self, resource_type: &str) -> Vec<(String, String)> {
        self.structs("TagSpecification")
            .into_iter()
            .filter(|spec| spec.get("ResourceType").is_none_or(|t| t == resource_type))
            .flat_map(|spec| spec.tags())
            .collect()
    }

    /// `Tag.N.Key` / `Tag.N.Value` pairs (a missing value is empty).
    pub fn tags(&self) -> Vec<(String, String)> {
        self.structs("Tag")
            .into_iter()
            .filter_map(|t| {
                let key = t.get("Key")?.to_string();
                Some((key, t.get("Value").unwrap_or_default().to_string()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_nested_lists_and_structures() {
        let p = Params::parse(
            b"Action=AuthorizeSecurityGroupIngress&GroupId=sg-1\
              &IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=22&IpPermissions.1.ToPort=22\
              &IpPermissions.1.IpRanges.1.CidrIp=10.0.0.0%2F8&IpPermissions.1.IpRanges.2.CidrIp=192.168.0.0%2F16\
              &IpPermissions.2.IpProtocol=-1&IpPermissions.2.Groups.1.GroupId=sg-2\
              &IpPermissions.10.IpProtocol=udp",
        );
        let perms = p.structs("IpPermissions");
        assert_eq!(perms.len(), 3);
        assert_eq!(perms[0].get("IpProtocol"), Some("tcp"));
        let ranges = perms[0].structs("IpRanges");
        assert_eq!(ranges.len(), 2);
        assert_eq!(ranges[1].get("CidrIp"), Some("192.168.0.0/16"));
        assert_eq!(perms[1].structs("Groups")[0].get("GroupId"), Some("sg-2"));
        assert_eq!(perms[2].get("IpProtocol"), Some("udp"), "index 10 sorts after 2");
    }

    #[test]
    fn decodes_lists_and_filters_in_index_order() {
        let p = Params::parse(
            b"InstanceId.2=i-b&InstanceId.1=i-a&InstanceId.10=i-c\
              &Filter.1.Name=tag%3AName&Filter.1.Value.1=web&Filter.1.Value.2=db&Filter.2.Name=domain",
        );
        assert_eq!(p.list("InstanceId"), vec!["i-a", "i-b", "i-c"]);
        let filters = p.filters().unwrap();
        assert_eq!(filters[0].name, "tag:Name");
        assert_eq!(filters[0].values, vec!["web", "db"]);
        assert!(filters[1].values.is_empty());
        assert!(Params::parse(b"Filter.1.Value.1=x").filters().is_err());
    }

    #[test]
    fn flags_and_numbers_are_checked() {
        let p = Params::parse(b"DryRun=true&MaxCount=x&MinCount=2&Bad=maybe");
        assert!(p.flag("DryRun").unwrap());
        assert!(!p.flag("Absent").unwrap());
        assert!(p.flag("Bad").is_err());
        assert_eq!(p.int("MinCount").unwrap(), Some(2));
        assert_eq!(p.int("MaxCount").unwrap_err().code(), "InvalidParameterValue");
        assert_eq!(p.required("Nope").unwrap_err().code(), "MissingParameter");
    }
}
