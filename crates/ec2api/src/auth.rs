//! Request authentication as EC2 does it: Signature Version 4 (boto3, the
//! AWS CLI; in the `Authorization` header or presigned in the query) and
//! Signature Version 2 (boto 2's default), checked against the stored
//! secret with constant-time comparison, with EC2's error for each way a
//! request can fail. The signing half is public too: tests and the load
//! generator sign requests with it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use model::{AccessKey, Ec2Error};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::params::Params;

type HmacSha256 = Hmac<Sha256>;
type HmacSha1 = Hmac<sha1::Sha1>;

/// What authentication needs to know about a request.
pub struct SignedRequest<'a> {
    /// `GET` or `POST`.
    pub method: &'a str,
    /// The path as sent (`/`).
    pub path: &'a str,
    /// The raw query string (without `?`).
    pub raw_query: &'a str,
    /// Every header, names in any case.
    pub headers: &'a [(String, String)],
    /// The body as sent.
    pub body: &'a [u8],
    /// The decoded parameters (query and form body).
    pub params: &'a Params,
}

impl SignedRequest<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Verifies the request's signature and returns the key that signed it.
/// `lookup` finds a stored key by id; `skew` is how far the request's time
/// may be from `now`.
pub fn authenticate(
    request: &SignedRequest<'_>,
    lookup: impl FnOnce(&str) -> Option<AccessKey>,
    now: SystemTime,
    skew: Duration,
) -> Result<AccessKey, Ec2Error> {
    if let Some(header) = request.header("authorization") {
        if let Some(rest) = header.strip_prefix("AWS4-HMAC-SHA256") {
            return verify_v4_header(request, rest, lookup, now, skew);
        }
        return Err(Ec2Error::IncompleteSignature(format!(
            "Unsupported Authorization header scheme: '{}'",
            header.split_whitespace().next().unwrap_or_default()
        )));
    }
    if request.params.get("X-Amz-Algorithm").is_some() {
        return verify_v4_query(request, lookup, now, skew);
    }
    if request.params.get("AWSAccessKeyId").is_some() || request.params.get("Signature").is_some() {
        return verify_v2(request, lookup, now, skew);
    }
    Err(Ec2Error::MissingAuthenticationToken)
}

// ---------------------------------------------------------------- SigV4

struct V4Parts<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_credential(credential: &str) -> Result<(&str, &str, &str, &str), Ec2Error> {
    let parts: Vec<&str> = credential.split('/').collect();
    match parts.as_slice() {
        [key, date, region, service, "aws4_request"] if !key.is_empty() => Ok((key, date, region, service)),
        _ => Err(Ec2Error::IncompleteSignature(format!(
            "Credential should be of the form KEY/DATE/REGION/SERVICE/aws4_request, not '{credential}'"
        ))),
    }
}

fn verify_v4_header(
    request: &SignedRequest<'_>,
    fields: &str,
    lookup: impl FnOnce(&str) -> Option<AccessKey>,
    now: SystemTime,
    skew: Duration,
) -> Result<AccessKey, Ec2Error> {
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for field in fields.split(',') {
        let field = field.trim();
        if let Some(v) = field.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = field.strip_prefix("SignedHeaders=") {
            signed_headers = Some(v);
        } else if let Some(v) = field.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let missing = |what: &str| {
        Ec2Error::IncompleteSignature(format!("Authorization header requires '{what}' parameter."))
    };
    let credential = credential.ok_or_else(|| missing("Credential"))?;
    let signed_headers = signed_headers.ok_or_else(|| missing("SignedHeaders"))?;
    let signature = signature.ok_or_else(|| missing("Signature"))?;
    let amz_date = request.header("x-amz-date").ok_or_else(|| {
        Ec2Error::IncompleteSignature(
            "Authorization header requires existence of a 'X-Amz-Date' header.".into(),
        )
    })?;
    let (access_key_id, date, region, service) = parse_credential(credential)?;
    let parts = V4Parts {
        access_key_id,
        date,
        region,
        service,
        signed_headers: signed_headers.split(';').collect(),
        signature,
    };
    // The body carries the parameters, so it is always what is signed (an
    // `x-amz-content-sha256: UNSIGNED-PAYLOAD` would leave them open to tampering).
    let payload_hash = hex(&Sha256::digest(request.body));
    let canonical_query = canonical_query_v4(request.raw_query, None);
    verify_v4(
        request,
        &parts,
        amz_date,
        &canonical_query,
        &[&payload_hash],
        lookup,
        now,
        skew,
        None,
    )
}

fn verify_v4_query(
    request: &SignedRequest<'_>,
    lookup: impl FnOnce(&str) -> Option<AccessKey>,
    now: SystemTime,
    skew: Duration,
) -> Result<AccessKey, Ec2Error> {
    let p = request.params;
    if p.get("X-Amz-Algorithm") != Some("AWS4-HMAC-SHA256") {
        return Err(Ec2Error::IncompleteSignature(
            "X-Amz-Algorithm must be AWS4-HMAC-SHA256".into(),
        ));
    }
    let need = |name: &str| {
        p.get(name).ok_or_else(|| {
            Ec2Error::IncompleteSignature(format!(
                "Query-string authentication requires the {name} parameter"
            ))
        })
    };
    let (access_key_id, date, region, service) = parse_credential(need("X-Amz-Credential")?)?;
    let amz_date = need("X-Amz-Date")?;
    let expires: u64 = need("X-Amz-Expires")?
        .parse()
        .map_err(|_| Ec2Error::IncompleteSignature("X-Amz-Expires must be a number of seconds".into()))?;
    let parts = V4Parts {
        access_key_id,
        date,
        region,
        service,
        signed_headers: need("X-Amz-SignedHeaders")?.split(';').collect(),
        signature: need("X-Amz-Signature")?,
    };
    let canonical_query = canonical_query_v4(request.raw_query, Some("X-Amz-Signature"));
    // Presigned URLs: botocore signs "UNSIGNED-PAYLOAD", AWS's own examples
    // the hash of the empty body; both are fine while there is no body
    // (with one, its parameters must be signed).
    let payload_hash = hex(&Sha256::digest(request.body));
    let candidates: &[&str] = if request.body.is_empty() {
        &[&payload_hash, "UNSIGNED-PAYLOAD"]
    } else {
        &[&payload_hash]
    };
    verify_v4(
        request,
        &parts,
        amz_date,
        &canonical_query,
        candidates,
        lookup,
        now,
        skew,
        Some(expires),
    )
}

#[allow(clippy::too_many_arguments)]
fn verify_v4(
    request: &SignedRequest<'_>,
    parts: &V4Parts<'_>,
    amz_date: &str,
    canonical_query: &str,
    payload_hashes: &[&str],
    lookup: impl FnOnce(&str) -> Option<AccessKey>,
    now: SystemTime,
    skew: Duration,
    presigned_expiry: Option<u64>,
) -> Result<AccessKey, Ec2Error> {
    let signed_at = parse_amz_date(amz_date)
        .ok_or_else(|| Ec2Error::IncompleteSignature(format!("Invalid X-Amz-Date '{amz_date}'")))?;
    check_time(signed_at, presigned_expiry, now, skew, amz_date)?;
    if !parts.signed_headers.contains(&"host") {
        return Err(Ec2Error::SignatureDoesNotMatch);
    }
    let key = lookup(parts.access_key_id).ok_or(Ec2Error::AuthFailure)?;
    if parts.date != &amz_date[..amz_date.len().min(8)] {
        return Err(Ec2Error::SignatureDoesNotMatch);
    }
    let mut canonical_headers = String::new();
    for name in &parts.signed_headers {
        let values: Vec<String> = request
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        canonical_headers.push_str(name);
        canonical_headers.push(':');
        canonical_headers.push_str(&values.join(","));
        canonical_headers.push('\n');
    }
    let scope = format!("{}/{}/{}/aws4_request", parts.date, parts.region, parts.service);
    let signing_key = v4_signing_key(&key.secret_access_key, parts.date, parts.region, parts.service);
    for payload_hash in payload_hashes {
        let canonical_request = format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            request.method,
            canonical_uri(request.path),
            canonical_query,
            canonical_headers,
            parts.signed_headers.join(";"),
            payload_hash
        );
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex(&Sha256::digest(canonical_request.as_bytes()))
        );
        let expected = hex(&hmac_sha256(&signing_key, string_to_sign.as_bytes()));
        if bool::from(expected.as_bytes().ct_eq(parts.signature.as_bytes())) {
            return Ok(key);
        }
    }
    Err(Ec2Error::SignatureDoesNotMatch)
}

fn check_time(
    signed_at: u64,
    presigned_expiry: Option<u64>,
    now: SystemTime,
    skew: Duration,
    shown: &str,
) -> Result<(), Ec2Error> {
    let now = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let skew = skew.as_secs();
    let too_old = match presigned_expiry {
        Some(expires) => now > signed_at.saturating_add(expires).saturating_add(skew),
        None => now > signed_at.saturating_add(skew),
    };
    if too_old || signed_at > now.saturating_add(skew) {
        return Err(Ec2Error::RequestExpired(format!(
            "Request has expired. Timestamp date is {shown}"
        )));
    }
    Ok(())
}

fn v4_signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, b"aws4_request")
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn hmac_sha1(key: &[u8], data: &[u8]) -> [u8; 20] {
    let mut mac = <HmacSha1 as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_string();
    }
    // Each segment, decoded and encoded again (RFC 3986), slashes kept.
    path.split('/')
        .map(|segment| uri_encode(&percent_decode(segment)))
        .collect::<Vec<_>>()
        .join("/")
}

fn canonical_query_v4(raw_query: &str, skip: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (uri_encode(&percent_decode(k)), uri_encode(&percent_decode(v)))
        })
        .filter(|(k, _)| Some(k.as_str()) != skip)
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// RFC 3986 encoding as AWS signing wants it: unreserved characters kept, everything else `%XX`.
pub fn uri_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-decoding that leaves `+` alone (query strings of signed requests use `%20`).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex_value(bytes[i + 1]), hex_value(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

// ---------------------------------------------------------------- SigV2

fn verify_v2(
    request: &SignedRequest<'_>,
    lookup: impl FnOnce(&str) -> Option<AccessKey>,
    now: SystemTime,
    skew: Duration,
) -> Result<AccessKey, Ec2Error> {
    let p = request.params;
    let access_key_id = p
        .get("AWSAccessKeyId")
        .ok_or(Ec2Error::MissingAuthenticationToken)?;
    let signature = p.get("Signature").ok_or_else(|| {
        Ec2Error::IncompleteSignature("The request must contain the parameter Signature".into())
    })?;
    match p.get("SignatureVersion") {
        Some("2") => {}
        other => {
            return Err(Ec2Error::IncompleteSignature(format!(
                "SignatureVersion {} is not supported; use 2 or 4",
                other.unwrap_or("(missing)")
            )));
        }
    }
    let method = p.get("SignatureMethod").unwrap_or("HmacSHA256");
    if method != "HmacSHA256" && method != "HmacSHA1" {
        return Err(Ec2Error::InvalidParameterValue(format!(
            "Invalid SignatureMethod '{method}'"
        )));
    }
    match (p.get("Timestamp"), p.get("Expires")) {
        (Some(ts), None) => {
            let at = parse_iso8601(ts)
                .ok_or_else(|| Ec2Error::InvalidParameterValue(format!("Invalid Timestamp '{ts}'")))?;
            check_time(at, None, now, skew, ts)?;
        }
        (None, Some(expires)) => {
            let at = parse_iso8601(expires)
                .ok_or_else(|| Ec2Error::InvalidParameterValue(format!("Invalid Expires '{expires}'")))?;
            let now_secs = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            if now_secs > at {
                return Err(Ec2Error::RequestExpired(format!(
                    "Request has expired. Expires date is {expires}"
                )));
            }
        }
        (Some(_), Some(_)) => {
            return Err(Ec2Error::InvalidParameterCombination(
                "The parameter Timestamp cannot be used with the parameter Expires".into(),
            ));
        }
        (None, None) => return Err(Ec2Error::MissingParameter("Timestamp".into())),
    }
    let key = lookup(access_key_id).ok_or(Ec2Error::AuthFailure)?;
    let host = request.header("host").unwrap_or_default().to_ascii_lowercase();
    let expected_with = |host: &str| {
        v2_signature(
            request.method,
            host,
            request.path,
            p,
            &key.secret_access_key,
            method,
        )
    };
    let given = signature.as_bytes();
    // Clients differ on whether a non-default port is part of the signed
    // host (boto 2 signs what it puts in the Host header); accept both.
    let mut ok = bool::from(expected_with(&host).as_bytes().ct_eq(given));
    if !ok && let Some((bare, _port)) = host.rsplit_once(':') {
        ok = bool::from(expected_with(bare).as_bytes().ct_eq(given));
    }
    if ok {
        Ok(key)
    } else {
        Err(Ec2Error::SignatureDoesNotMatch)
    }
}

/// The Signature Version 2 signature (base64) of a request with these parameters.
pub fn v2_signature(
    method: &str,
    host: &str,
    path: &str,
    params: &Params,
    secret: &str,
    algorithm: &str,
) -> String {
    let mut pairs: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| *k != "Signature")
        .map(|(k, v)| (uri_encode(k), uri_encode(v)))
        .collect();
    pairs.sort();
    let query = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let path = if path.is_empty() { "/" } else { path };
    let string_to_sign = format!("{method}\n{host}\n{path}\n{query}");
    let digest: Vec<u8> = if algorithm == "HmacSHA1" {
        hmac_sha1(secret.as_bytes(), string_to_sign.as_bytes()).to_vec()
    } else {
        hmac_sha256(secret.as_bytes(), string_to_sign.as_bytes()).to_vec()
    };
    base64::engine::general_purpose::STANDARD.encode(digest)
}

// ---------------------------------------------------------------- signing (clients)

/// Signs a `POST /` form request with Signature Version 4 as botocore does;
/// returns the headers to send (`Host`, `Content-Type`, `X-Amz-Date`, `Authorization`).
pub fn sign_v4_post(
    host: &str,
    body: &[u8],
    access_key_id: &str,
    secret: &str,
    region: &str,
    amz_date: &str,
) -> Vec<(String, String)> {
    let content_type = "application/x-www-form-urlencoded; charset=utf-8";
    let date = &amz_date[..amz_date.len().min(8)];
    let payload_hash = hex(&Sha256::digest(body));
    let canonical_request = format!(
        "POST\n/\n\ncontent-type:{content_type}\nhost:{host}\nx-amz-date:{amz_date}\n\ncontent-type;host;x-amz-date\n{payload_hash}"
    );
    let scope = format!("{date}/{region}/ec2/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let signature = hex(&hmac_sha256(
        &v4_signing_key(secret, date, region, "ec2"),
        string_to_sign.as_bytes(),
    ));
    vec![
        ("Host".into(), host.into()),
        ("Content-Type".into(), content_type.into()),
        ("X-Amz-Date".into(), amz_date.into()),
        (
            "Authorization".into(),
            format!(
                "AWS4-HMAC-SHA256 Credential={access_key_id}/{scope}, SignedHeaders=content-type;host;x-amz-date, Signature={signature}"
            ),
        ),
    ]
}

// ---------------------------------------------------------------- time

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn seconds_of(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Option<u64> {
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    u64::try_from(days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s)).ok()
}

fn num(text: &str) -> Option<u32> {
    if text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse().ok()
    } else {
        None
    }
}

/// Parses SigV4's `20261127T161454Z`.
pub fn parse_amz_date(text: &str) -> Option<u64> {
    if text.len() != 16 || !text.is_char_boundary(8) || &text[8..9] != "T" || !text.ends_with('Z') {
        return None;
    }
    seconds_of(
        i64::from(num(&text[0..4])?),
        num(&text[4..6])?,
        num(&text[6..8])?,
        num(&text[9..11])?,
        num(&text[11..13])?,
        num(&text[13..15])?,
    )
}

/// Parses ISO 8601 as SigV2 clients send it: `2026-11-27T16:14:54Z`, with
/// optional fractional seconds and a `Z` or `+00:00`-style offset.
pub fn parse_iso8601(text: &str) -> Option<u64> {
    let text = text.trim();
    if text.len() < 19 || !text.is_ascii() {
        return None;
    }
    let (date, rest) = text.split_at(10);
    let parts: Vec<&str> = date.split('-').collect();
    let [y, mo, d] = parts.as_slice() else { return None };
    let rest = rest.strip_prefix('T')?;
    let (clock, zone) = rest.split_at(8);
    let hms: Vec<&str> = clock.split(':').collect();
    let [h, mi, s] = hms.as_slice() else { return None };
    let mut zone = zone;
    if let Some(fraction) = zone.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        zone = &fraction[digits..];
    }
    let offset: i64 = match zone {
        "" | "Z" => 0,
        z if z.len() == 6 && (z.starts_with('+') || z.starts_with('-')) => {
            let hours = i64::from(num(&z[1..3])?);
            let minutes = i64::from(num(&z[4..6])?);
            let sign = if z.starts_with('-') { -1 } else { 1 };
            sign * (hours * 3600 + minutes * 60)
        }
        _ => return None,
    };
    let local = seconds_of(i64::from(num(y)?), num(mo)?, num(d)?, num(h)?, num(mi)?, num(s)?)?;
    u64::try_from(i64::try_from(local).ok()? - offset).ok()
}

/// Formats seconds since the epoch as SigV4's `20261127T161454Z`.
pub fn format_amz_date(secs: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// Formats milliseconds since the epoch as EC2's `2026-11-27T16:14:54.000Z`.
pub fn format_iso8601_ms(ms: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(ms / 1000);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z", ms % 1000)
}

fn civil(secs: u64) -> (i64, u32, u32, u64, u64, u64) {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let (y, mo, d) = civil_from_days(days);
    let rem = secs % 86_400;
    (y, mo, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::AccountId;

    fn key() -> AccessKey {
        AccessKey {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            account_id: AccountId::parse("123456789012").unwrap(),
            read_only: false,
            created_ms: 0,
        }
    }

    #[test]
    fn dates_round_trip() {
        let t = parse_amz_date("20261127T161454Z").unwrap();
        assert_eq!(format_amz_date(t), "20261127T161454Z");
        assert_eq!(parse_iso8601("2026-11-27T16:14:54Z"), Some(t));
        assert_eq!(parse_iso8601("2026-11-27T16:14:54.123456Z"), Some(t));
        assert_eq!(parse_iso8601("2026-11-27T17:14:54+01:00"), Some(t));
        assert_eq!(format_iso8601_ms(t * 1000 + 5), "2026-11-27T16:14:54.005Z");
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(1_440_938_160));
        assert!(parse_amz_date("2026112XT161454Z").is_none());
        assert!(parse_iso8601("yesterday").is_none());
    }

    /// The example of AWS's SigV4 documentation (IAM ListUsers, GET with a query).
    #[test]
    fn verifies_the_documented_sigv4_example() {
        let headers = vec![
            ("Host".to_string(), "iam.amazonaws.com".to_string()),
            (
                "Content-Type".to_string(),
                "application/x-www-form-urlencoded; charset=utf-8".to_string(),
            ),
            ("X-Amz-Date".to_string(), "20150830T123600Z".to_string()),
            (
                "Authorization".to_string(),
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date, \
                 Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
                    .to_string(),
            ),
        ];
        let raw_query = "Action=ListUsers&Version=2010-05-08";
        let params = Params::parse(raw_query.as_bytes());
        let request = SignedRequest {
            method: "GET",
            path: "/",
            raw_query,
            headers: &headers,
            body: b"",
            params: &params,
        };
        let at = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        let skew = Duration::from_secs(300);
        assert!(authenticate(&request, |_| Some(key()), at, skew).is_ok());
        let late = at + Duration::from_secs(301);
        assert_eq!(
            authenticate(&request, |_| Some(key()), late, skew)
                .unwrap_err()
                .code(),
            "RequestExpired"
        );
        assert_eq!(
            authenticate(&request, |_| None, at, skew).unwrap_err().code(),
            "AuthFailure"
        );
        let mut wrong = key();
        wrong.secret_access_key.push('x');
        assert_eq!(
            authenticate(&request, |_| Some(wrong), at, skew)
                .unwrap_err()
                .code(),
            "SignatureDoesNotMatch"
        );
    }

    #[test]
    fn our_signer_and_verifier_agree_and_tampering_is_caught() {
        let body = b"Action=DescribeAddresses&Version=2016-11-15";
        let now = 1_790_000_000;
        let headers = sign_v4_post(
            "127.0.0.1:8773",
            body,
            "AKIDEXAMPLE",
            &key().secret_access_key,
            "flowgate-1",
            &format_amz_date(now),
        );
        let params = Params::parse(body);
        let at = UNIX_EPOCH + Duration::from_secs(now);
        let ok = SignedRequest {
            method: "POST",
            path: "/",
            raw_query: "",
            headers: &headers,
            body,
            params: &params,
        };
        assert!(authenticate(&ok, |_| Some(key()), at, Duration::from_secs(300)).is_ok());
        let tampered = b"Action=DescribeAddresses&Version=2016-11-16";
        let bad = SignedRequest { body: tampered, ..ok };
        assert_eq!(
            authenticate(&bad, |_| Some(key()), at, Duration::from_secs(300))
                .unwrap_err()
                .code(),
            "SignatureDoesNotMatch"
        );
    }

    #[test]
    fn sigv2_round_trip_and_missing_parts() {
        let now = 1_790_000_000;
        let mut pairs = vec![
            ("Action", "DescribeAddresses"),
            ("AWSAccessKeyId", "AKIDEXAMPLE"),
            ("SignatureMethod", "HmacSHA256"),
            ("SignatureVersion", "2"),
            ("Version", "2014-10-01"),
        ];
        let ts = "2026-09-21T14:13:20Z";
        assert_eq!(parse_iso8601(ts), Some(now));
        pairs.push(("Timestamp", ts));
        let unsigned = Params::from_pairs(pairs.clone());
        let sig = v2_signature(
            "POST",
            "127.0.0.1:8773",
            "/",
            &unsigned,
            &key().secret_access_key,
            "HmacSHA256",
        );
        pairs.push(("Signature", &sig));
        let params = Params::from_pairs(pairs);
        let headers = vec![("Host".to_string(), "127.0.0.1:8773".to_string())];
        let request = SignedRequest {
            method: "POST",
            path: "/",
            raw_query: "",
            headers: &headers,
            body: b"",
            params: &params,
        };
        let at = UNIX_EPOCH + Duration::from_secs(now);
        assert!(authenticate(&request, |_| Some(key()), at, Duration::from_secs(300)).is_ok());
        let none = Params::parse(b"Action=DescribeAddresses");
        let bare = SignedRequest {
            params: &none,
            ..request
        };
        assert_eq!(
            authenticate(&bare, |_| Some(key()), at, Duration::from_secs(300))
                .unwrap_err()
                .code(),
            "MissingAuthenticationToken"
        );
    }
}
