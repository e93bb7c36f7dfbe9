//! Schemas from proto descriptors, for the JSON that `#[http]` routes read and write: the
//! proto3 JSON mapping (64-bit integers as strings, enums by name, bytes in base64, the
//! well-known types in their canonical forms), or the serde derive of prost's structs.

use std::collections::BTreeMap;

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorSet};
use serde_json::{Map, Value, json};

use super::JsonMapping;

/// Every message, enum and method of some descriptor sets, by full name.
#[derive(Default)]
pub(super) struct Index {
    mapping: JsonMapping,
    messages: BTreeMap<String, Described<DescriptorProto>>,
    enums: BTreeMap<String, Vec<(String, i32)>>,
    /// `user.v1.Users/GetUser` → (input, output, comment).
    methods: BTreeMap<String, (String, String, String)>,
}

/// A descriptor with the comment above it and above each of its fields.
struct Described<T> {
    item: T,
    comment: String,
    fields: Vec<String>,
}

impl Index {
    /// Reads encoded `FileDescriptorSet`s; a set that does not decode is an error.
    pub(super) fn new(sets: &[&[u8]], mapping: JsonMapping) -> Result<Self, String> {
        let mut index = Self {
            mapping,
            ..Self::default()
        };
        for bytes in sets {
            let set = FileDescriptorSet::decode(*bytes)
                .map_err(|e| format!("a registered descriptor set does not decode: {e}"))?;
            for file in set.file {
                index.add_file(file);
            }
        }
        Ok(index)
    }

    fn add_file(&mut self, file: prost_types::FileDescriptorProto) {
        let comments = Comments::of(&file);
        let package = file.package.clone().unwrap_or_default();
        for (i, message) in file.message_type.into_iter().enumerate() {
            self.add_message(&package, message, vec![4, i as i32], &comments);
        }
        for e in file.enum_type {
            self.add_enum(&package, e);
        }
        for (s, service) in file.service.into_iter().enumerate() {
            let name = join(&package, service.name());
            for (m, method) in service.method.into_iter().enumerate() {
                let comment = comments.at(&[6, s as i32, 2, m as i32]);
                let key = format!("{name}/{}", method.name());
                let io = (
                    trim_dot(method.input_type()),
                    trim_dot(method.output_type()),
                    comment,
                );
                self.methods.insert(key, io);
            }
        }
    }

    fn add_message(
        &mut self,
        scope: &str,
        mut message: DescriptorProto,
        path: Vec<i32>,
        comments: &Comments,
    ) {
        let name = join(scope, message.name());
        for (i, nested) in std::mem::take(&mut message.nested_type)
            .into_iter()
            .enumerate()
        {
            let mut inner = path.clone();
            inner.extend([3, i as i32]);
            self.add_message(&name, nested, inner, comments);
        }
        for e in std::mem::take(&mut message.enum_type) {
            self.add_enum(&name, e);
        }
        let fields = (0..message.field.len())
            .map(|i| {
                let mut at = path.clone();
                at.extend([2, i as i32]);
                comments.at(&at)
            })
            .collect();
        let described = Described {
            comment: comments.at(&path),
            fields,
            item: message,
        };
        self.messages.insert(name, described);
    }

    fn add_enum(&mut self, scope: &str, e: prost_types::EnumDescriptorProto) {
        let values = e
            .value
            .iter()
            .map(|v| (v.name().to_owned(), v.number()))
            .collect();
        self.enums.insert(join(scope, e.name()), values);
    }

    /// How messages are written as JSON.
    pub(super) fn mapping(&self) -> JsonMapping {
        self.mapping
    }

    /// The input and output message and the comment of `service/method`.
    pub(super) fn method(&self, service: &str, method: &str) -> Option<&(String, String, String)> {
        self.methods.get(&format!("{service}/{method}"))
    }

    /// The fields of `message`: the JSON name, the schema, how it can travel, and the proto
    /// name (which a route's path may use).
    pub(super) fn fields(
        &self,
        message: &str,
        schemas: &mut Schemas,
    ) -> Result<Vec<Field>, String> {
        let described = self
            .messages
            .get(message)
            .ok_or_else(|| format!("message {message} is not in the descriptors"))?;
        let mut out = Vec::new();
        let mut oneofs: BTreeMap<i32, Vec<&FieldDescriptorProto>> = BTreeMap::new();
        for (field, comment) in described.item.field.iter().zip(&described.fields) {
            let in_oneof = field.oneof_index.is_some() && !field.proto3_optional();
            if in_oneof && self.mapping == JsonMapping::SerdeDerive {
                oneofs
                    .entry(field.oneof_index.unwrap_or_default())
                    .or_default()
                    .push(field);
                continue;
            }
            // In the proto3 mapping a oneof's members are plain fields, at most one set.
            let mut schema = if in_oneof {
                self.single(field, schemas)?
            } else {
                self.field_schema(field, schemas)?
            };
            describe(&mut schema, comment);
            let kind = match (field.label(), field.r#type()) {
                (Label::Repeated, _) => FieldKind::Repeated,
                (_, Type::Message | Type::Group) if !self.is_text(field) => FieldKind::Message,
                _ => FieldKind::Scalar,
            };
            out.push(Field {
                name: self.json_name(field),
                proto: field.name().to_owned(),
                schema,
                kind,
            });
        }
        for (i, fields) in oneofs {
            let name = described
                .item
                .oneof_decl
                .get(i as usize)
                .map(|o| o.name().to_owned())
                .unwrap_or_default();
            let mut variants = Vec::new();
            for field in fields {
                let variant = pascal(field.name());
                variants.push(json!({
                    "type": "object",
                    "properties": { variant.clone(): self.single(field, schemas)? },
                    "required": [variant],
                    "additionalProperties": false,
                }));
            }
            variants.push(json!({"type": "null"}));
            out.push(Field {
                name: serde_name(&name),
                proto: name,
                schema: json!({"anyOf": variants}),
                kind: FieldKind::Message,
            });
        }
        Ok(out)
    }

    /// Whether a message field is written as one scalar in the proto3 mapping (a timestamp,
    /// a duration, a wrapper), so it can also come from a query string.
    fn is_text(&self, field: &FieldDescriptorProto) -> bool {
        self.mapping != JsonMapping::SerdeDerive
            && trim_dot(field.type_name())
                .strip_prefix("google.protobuf.")
                .is_some_and(|t| t == "Timestamp" || t == "Duration" || t.ends_with("Value"))
            && !field.type_name().ends_with(".Value")
            && !field.type_name().ends_with("ListValue")
    }

    /// The name a field has in JSON output.
    fn json_name(&self, field: &FieldDescriptorProto) -> String {
        match self.mapping {
            JsonMapping::Proto3 => field.name().to_owned(),
            JsonMapping::Proto3LowerCamel => match &field.json_name {
                Some(name) if !name.is_empty() => name.clone(),
                _ => lower_camel(field.name()),
            },
            JsonMapping::SerdeDerive => serde_name(field.name()),
        }
    }

    /// The `$ref` of `message`, adding its schema (and those it uses) to `schemas`.
    pub(super) fn reference(&self, message: &str, schemas: &mut Schemas) -> Result<Value, String> {
        let reference = json!({"$ref": format!("#/components/schemas/{message}")});
        if schemas.contains_key(message) {
            return Ok(reference);
        }
        if message.starts_with("google.protobuf.") {
            return match self.mapping {
                JsonMapping::SerdeDerive => Err(format!(
                    "{message} has no JSON form with a serde derive: prost's well-known types \
                     do not implement serde (use pbjson, see truss::openapi)"
                )),
                _ => Ok(well_known(message)),
            };
        }
        // Placeholder first: recursive messages refer to themselves.
        schemas.insert(message.to_owned(), Value::Null);
        let mut properties = Map::new();
        for field in self.fields(message, schemas)? {
            properties.insert(field.name, field.schema);
        }
        let mut schema = json!({"type": "object", "properties": properties});
        if let Some(described) = self.messages.get(message) {
            describe(&mut schema, &described.comment);
        }
        schemas.insert(message.to_owned(), schema);
        Ok(reference)
    }

    /// A field's schema: repeated, map or single.
    fn field_schema(
        &self,
        field: &FieldDescriptorProto,
        schemas: &mut Schemas,
    ) -> Result<Value, String> {
        if field.label() == Label::Repeated {
            if let Some(entry) = self.map_entry(field) {
                let value = entry
                    .item
                    .field
                    .iter()
                    .find(|f| f.number() == 2)
                    .ok_or("a map entry without a value field")?;
                let value = self.single(value, schemas)?;
                return Ok(json!({"type": "object", "additionalProperties": value}));
            }
            let item = self.single(field, schemas)?;
            return Ok(json!({"type": "array", "items": item}));
        }
        let single = self.single(field, schemas)?;
        let nullable = field.proto3_optional() || field.r#type() == Type::Message;
        Ok(if nullable {
            json!({"anyOf": [single, {"type": "null"}]})
        } else {
            single
        })
    }

    fn map_entry(&self, field: &FieldDescriptorProto) -> Option<&Described<DescriptorProto>> {
        let entry = self.messages.get(&trim_dot(field.type_name()))?;
        entry
            .item
            .options
            .as_ref()
            .and_then(|o| o.map_entry)
            .unwrap_or(false)
            .then_some(entry)
    }

    /// The schema of one value of `field`'s type.
    fn single(&self, field: &FieldDescriptorProto, schemas: &mut Schemas) -> Result<Value, String> {
        let proto3 = self.mapping != JsonMapping::SerdeDerive;
        let int = |format: &str, min: Option<u64>, max: u64| {
            let mut s = json!({"type": "integer", "format": format, "maximum": max});
            if let Some(min) = min {
                s["minimum"] = json!(min);
            }
            s
        };
        Ok(match field.r#type() {
            Type::String => json!({"type": "string"}),
            Type::Bool => json!({"type": "boolean"}),
            Type::Double => json!({"type": "number", "format": "double"}),
            Type::Float => json!({"type": "number", "format": "float"}),
            Type::Int32 | Type::Sint32 | Type::Sfixed32 => {
                json!({"type": "integer", "format": "int32"})
            }
            Type::Uint32 | Type::Fixed32 => int("int64", Some(0), u64::from(u32::MAX)),
            Type::Int64 | Type::Sint64 | Type::Sfixed64 if proto3 => int64_string(true),
            Type::Uint64 | Type::Fixed64 if proto3 => int64_string(false),
            Type::Int64 | Type::Sint64 | Type::Sfixed64 => {
                json!({"type": "integer", "format": "int64"})
            }
            Type::Uint64 | Type::Fixed64 => int("int64", Some(0), u64::MAX),
            Type::Bytes if proto3 => json!({"type": "string", "contentEncoding": "base64"}),
            Type::Bytes => json!({
                "type": "array",
                "items": {"type": "integer", "minimum": 0, "maximum": 255},
            }),
            Type::Enum => self.enum_schema(&trim_dot(field.type_name())),
            Type::Message | Type::Group => self.reference(&trim_dot(field.type_name()), schemas)?,
        })
    }

    /// An enum: by name in the proto3 mapping (numbers accepted on input too), else its
    /// number.
    fn enum_schema(&self, name: &str) -> Value {
        let values = self.enums.get(name).cloned().unwrap_or_default();
        if self.mapping != JsonMapping::SerdeDerive {
            let names: Vec<&str> = values.iter().map(|(n, _)| n.as_str()).collect();
            return json!({"type": "string", "enum": names, "description": format!("{name}")});
        }
        let listed: Vec<String> = values.iter().map(|(n, v)| format!("{v} = {n}")).collect();
        json!({
            "type": "integer",
            "format": "int32",
            "description": format!("{name}: {}", listed.join(", ")),
        })
    }
}

/// A field of a message as a route sees it.
pub(super) struct Field {
    /// Its name in JSON output.
    pub(super) name: String,
    /// Its name in the `.proto` file (path parameters use it).
    pub(super) proto: String,
    pub(super) schema: Value,
    pub(super) kind: FieldKind,
}

/// A 64-bit integer in the proto3 mapping: a decimal string on output (numbers are
/// accepted on input too).
fn int64_string(signed: bool) -> Value {
    let (format, pattern) = if signed {
        ("int64", "^-?[0-9]{1,19}$")
    } else {
        ("uint64", "^[0-9]{1,20}$")
    };
    json!({"type": "string", "format": format, "pattern": pattern})
}

/// The canonical JSON form of a well-known type (`google.protobuf.*`).
fn well_known(message: &str) -> Value {
    let name = message.trim_start_matches("google.protobuf.");
    match name {
        "Timestamp" => json!({"type": "string", "format": "date-time"}),
        "Duration" => json!({"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$"}),
        "DoubleValue" | "FloatValue" => json!({"type": ["number", "null"]}),
        "Int64Value" => json!({"anyOf": [int64_string(true), {"type": "null"}]}),
        "UInt64Value" => json!({"anyOf": [int64_string(false), {"type": "null"}]}),
        "Int32Value" | "UInt32Value" => json!({"type": ["integer", "null"]}),
        "BoolValue" => json!({"type": ["boolean", "null"]}),
        "StringValue" | "FieldMask" => json!({"type": ["string", "null"]}),
        "BytesValue" => json!({"type": ["string", "null"], "contentEncoding": "base64"}),
        "Struct" | "Empty" => json!({"type": "object"}),
        "ListValue" => json!({"type": "array"}),
        "Any" => json!({"type": "object", "properties": {"@type": {"type": "string"}}}),
        _ => json!({}),
    }
}

/// How a field can travel in a request: scalars also in a path or query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FieldKind {
    Scalar,
    Repeated,
    Message,
}

/// Component schemas by name.
pub(super) type Schemas = Map<String, Value>;

/// The comments of one file, by source location path.
struct Comments(BTreeMap<Vec<i32>, String>);

impl Comments {
    fn of(file: &prost_types::FileDescriptorProto) -> Self {
        let mut map = BTreeMap::new();
        for location in file.source_code_info.iter().flat_map(|s| &s.location) {
            let text = location.leading_comments().trim();
            if !text.is_empty() {
                let text: Vec<&str> = text.lines().map(str::trim).collect();
                map.insert(location.path.clone(), text.join("\n"));
            }
        }
        Self(map)
    }

    fn at(&self, path: &[i32]) -> String {
        self.0.get(path).cloned().unwrap_or_default()
    }
}

fn describe(schema: &mut Value, comment: &str) {
    if !comment.is_empty()
        && schema.get("$ref").is_none()
        && let Some(object) = schema.as_object_mut()
    {
        object.insert("description".to_owned(), json!(comment));
    }
}

fn join(scope: &str, name: &str) -> String {
    if scope.is_empty() {
        name.to_owned()
    } else {
        format!("{scope}.{name}")
    }
}

fn trim_dot(name: &str) -> String {
    name.trim_start_matches('.').to_owned()
}

/// The serde name of a prost field: the proto name in snake case (prost's own rule for the
/// common forms: `pageSize` and `page_size` both become `page_size`).
pub(super) fn serde_name(proto: &str) -> String {
    let mut out = String::with_capacity(proto.len() + 4);
    let mut prev_lower = false;
    for c in proto.chars() {
        if c.is_ascii_uppercase() {
            if prev_lower {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
            prev_lower = false;
        } else {
            out.push(c);
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        }
    }
    out
}

/// protoc's default `json_name`: `page_size` → `pageSize`.
fn lower_camel(proto: &str) -> String {
    let mut out = String::with_capacity(proto.len());
    let mut upper = false;
    for c in proto.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// A oneof variant's name in prost: the field name in PascalCase.
fn pascal(proto: &str) -> String {
    proto
        .split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut chars = p.chars();
            chars.next().map_or_else(String::new, |c| {
                c.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prost() {
        assert_eq!(serde_name("page_size"), "page_size");
        assert_eq!(serde_name("pageSize"), "page_size");
        assert_eq!(serde_name("id"), "id");
        assert_eq!(pascal("user_id"), "UserId");
        assert_eq!(lower_camel("page_size"), "pageSize");
    }
}
