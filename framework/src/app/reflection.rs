//! gRPC server reflection (`grpc.reflection.v1` and `grpc.reflection.v1alpha`) over the
//! standard health service and the descriptor sets registered with
//! `AppBuilder::file_descriptor_set`.

use tonic::service::Routes;
use tonic_reflection::server::{Builder, Error};

use super::AppError;
use crate::config::ValidationError;

/// Adds both reflection services to `routes` when `serve` is true. The sets are decoded
/// either way, so a bad one fails every start alike, whatever the config says.
pub(super) fn add_reflection(
    routes: Routes,
    sets: &[&'static [u8]],
    serve: bool,
) -> Result<Routes, AppError> {
    // Each version also describes the other: a client asking either one sees both listed.
    let v1 = described(sets)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
        .build_v1();
    let v1alpha = described(sets)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .build_v1alpha();
    let (v1, v1alpha) = match (v1, v1alpha) {
        (Ok(v1), Ok(v1alpha)) => (v1, v1alpha),
        (Err(e), _) | (_, Err(e)) => return Err(culprit(sets, e).into()),
    };
    Ok(if serve {
        routes.add_service(v1).add_service(v1alpha)
    } else {
        routes
    })
}

/// A reflection builder with the team's sets, then the standard health service's.
fn described<'a>(sets: &[&'a [u8]]) -> Builder<'a> {
    sets.iter()
        .fold(Builder::configure(), |b, &set| {
            b.register_encoded_file_descriptor_set(set)
        })
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// Which registered set is bad, and why (only looked for once building failed).
fn culprit(sets: &[&[u8]], error: Error) -> ValidationError {
    let single = |set: &[u8]| {
        Builder::configure()
            .include_reflection_service(false)
            .register_encoded_file_descriptor_set(set)
            .build_v1()
            .err()
    };
    let (field, error) = sets
        .iter()
        .enumerate()
        .find_map(|(i, set)| single(set).map(|e| (format!("file_descriptor_set[{i}]"), e)))
        .unwrap_or_else(|| ("file_descriptor_set".to_owned(), error));
    let why = match error {
        Error::DecodeError(e) => e.to_string(),
        Error::InvalidFileDescriptorSet(why) => why,
    };
    ValidationError::new(
        field,
        format!("not a valid encoded FileDescriptorSet: {why}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_sets_are_named_not_a_panic() {
        let good: &'static [u8] = tonic_health::pb::FILE_DESCRIPTOR_SET;
        // A field 1 (`file`) of length 5 with 1 byte in it: truncated.
        let bad: &'static [u8] = &[0x0a, 0x05, 0x01];
        for serve in [true, false] {
            let e = add_reflection(Routes::default(), &[good, bad], serve).unwrap_err();
            let text = e.to_string();
            assert!(text.contains("`file_descriptor_set[1]`"), "{text}");
            assert!(
                text.contains("not a valid encoded FileDescriptorSet"),
                "{text}"
            );
        }
    }

    #[test]
    fn good_sets_and_none_build() {
        let good: &'static [u8] = tonic_health::pb::FILE_DESCRIPTOR_SET;
        assert!(add_reflection(Routes::default(), &[good, good], true).is_ok());
        assert!(add_reflection(Routes::default(), &[], true).is_ok());
    }
}
