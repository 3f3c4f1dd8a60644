//! EC2's XML: responses in the namespace of the API version the client
//! asked for, with `requestId` and `item` sets, and the error envelope.
//! Written straight into a `String` (no DOM): responses are large and hot.

use std::fmt::Write as _;

use model::Ec2Error;

/// A response body being written.
pub struct Xml {
    buf: String,
}

/// Escapes text for XML content.
pub fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}

impl Xml {
    /// Starts `<{action}Response xmlns=…><requestId>…</requestId>`.
    pub fn response(action: &str, version: &str, request_id: &str) -> Xml {
        let mut buf = String::with_capacity(1024);
        buf.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<");
        buf.push_str(action);
        buf.push_str("Response xmlns=\"http://ec2.amazonaws.com/doc/");
        escape_into(&mut buf, version);
        buf.push_str("/\"><requestId>");
        buf.push_str(request_id);
        buf.push_str("</requestId>");
        Xml { buf }
    }

    /// Finishes the response started by [`Xml::response`].
    pub fn finish(mut self, action: &str) -> String {
        self.buf.push_str("</");
        self.buf.push_str(action);
        self.buf.push_str("Response>");
        self.buf
    }

    /// `<tag>`.
    pub fn open(&mut self, tag: &str) -> &mut Self {
        self.buf.push('<');
        self.buf.push_str(tag);
        self.buf.push('>');
        self
    }

    /// `</tag>`.
    pub fn close(&mut self, tag: &str) -> &mut Self {
        self.buf.push_str("</");
        self.buf.push_str(tag);
        self.buf.push('>');
        self
    }

    /// `<tag>escaped text</tag>`.
    pub fn leaf(&mut self, tag: &str, text: &str) -> &mut Self {
        self.open(tag);
        escape_into(&mut self.buf, text);
        self.close(tag)
    }

    /// `<tag>value</tag>` for anything displayable that needs no escaping (numbers, ids, addresses).
    pub fn leaf_display(&mut self, tag: &str, value: impl std::fmt::Display) -> &mut Self {
        self.open(tag);
        let _ = write!(self.buf, "{value}");
        self.close(tag)
    }

    /// `<tag>text</tag>` only when there is a value.
    pub fn leaf_opt(&mut self, tag: &str, text: Option<&str>) -> &mut Self {
        if let Some(text) = text {
            self.leaf(tag, text);
        }
        self
    }

    /// Appends a fragment already in XML.
    pub fn raw(&mut self, fragment: &str) -> &mut Self {
        self.buf.push_str(fragment);
        self
    }

    /// `<tag><item>…</item>…</tag>`, one item per element of `items`.
    pub fn items<T>(
        &mut self,
        tag: &str,
        items: impl IntoIterator<Item = T>,
        mut each: impl FnMut(&mut Self, T),
    ) -> &mut Self {
        self.open(tag);
        for item in items {
            self.open("item");
            each(self, item);
            self.close("item");
        }
        self.close(tag)
    }

    /// `<tagSet>` of key/value tags.
    pub fn tag_set<'a>(&mut self, tags: impl IntoIterator<Item = (&'a String, &'a String)>) -> &mut Self {
        self.items("tagSet", tags, |x, (k, v)| {
            x.leaf("key", k).leaf("value", v);
        })
    }
}

/// EC2's error envelope.
pub fn error_body(error: &Ec2Error, request_id: &str) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>");
    out.push_str(error.code());
    out.push_str("</Code><Message>");
    escape_into(&mut out, &error.to_string());
    out.push_str("</Message></Error></Errors><RequestID>");
    out.push_str(request_id);
    out.push_str("</RequestID></Response>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_namespaced_responses_and_escapes() {
        let mut x = Xml::response("DescribeTags", "2016-11-15", "rid");
        x.tag_set([(&"a<b".to_string(), &"x&y".to_string())]);
        let body = x.finish("DescribeTags");
        assert!(body.contains("<DescribeTagsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">"));
        assert!(body.contains("<tagSet><item><key>a&lt;b</key><value>x&amp;y</value></item></tagSet>"));
        assert!(body.ends_with("</DescribeTagsResponse>"));
        let err = error_body(&Ec2Error::AuthFailure, "rid");
        assert!(err.contains("<Code>AuthFailure</Code>") && err.contains("<RequestID>rid</RequestID>"));
    }
}
