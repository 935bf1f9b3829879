//! The version of the contract a plugin was built for. A plugin built
//! against another `rumoci:driver` package (an older SDK) imports and
//! exports interfaces of that version, which the linker cannot match; it is
//! refused with one line saying so, before linking, instead of the
//! linker's error about a missing instance.

use wasmtime::Engine;
use wasmtime::component::Component;

/// The version of the `rumoci:driver` package this host speaks (the
/// `package` line of the repository's `wit/driver.wit`).
pub const CONTRACT_VERSION: &str = "0.2.0";

/// The contract package's namespace and name.
const PACKAGE: &str = "rumoci:driver";

/// The `rumoci:driver` version an import or export name refers to
/// (`rumoci:driver/host@0.1.0` → `0.1.0`; `""` when it names none), or
/// `None` for a name of another package.
fn version_of(name: &str) -> Option<&str> {
    let rest = name.strip_prefix(PACKAGE)?.strip_prefix('/')?;
    Some(rest.split_once('@').map_or("", |(_, v)| v))
}

/// The first `rumoci:driver` version among `names` that is not ours.
fn foreign_version<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    names
        .into_iter()
        .filter_map(version_of)
        .find(|v| *v != CONTRACT_VERSION)
}

/// The SDK release line built for this contract (`0.2` for `0.2.0`, `1`
/// for `1.3.0`).
fn sdk_series() -> String {
    let mut parts = CONTRACT_VERSION.split('.');
    match (parts.next(), parts.next()) {
        (Some("0"), Some(minor)) => format!("0.{minor}"),
        (Some(major), _) => major.to_string(),
        (None, _) => CONTRACT_VERSION.to_string(),
    }
}

/// Why a plugin speaking contract `version` is refused.
fn mismatch(version: &str) -> String {
    let theirs = if version.is_empty() {
        format!("an unversioned {PACKAGE}")
    } else {
        format!("{PACKAGE}@{version}")
    };
    format!(
        "built for {theirs}; this rumoci speaks {PACKAGE}@{CONTRACT_VERSION}: rebuild it against rumoci-driver-sdk {}",
        sdk_series()
    )
}

/// Check that `component` imports and exports the `rumoci:driver`
/// interfaces of [`CONTRACT_VERSION`] only; else the reason, one line.
pub(crate) fn check(engine: &Engine, component: &Component) -> Result<(), String> {
    let ty = component.component_type();
    let names = ty
        .imports(engine)
        .map(|(n, _)| n)
        .chain(ty.exports(engine).map(|(n, _)| n));
    match foreign_version(names) {
        Some(v) => Err(mismatch(v)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component (binary format) importing one empty instance named
    /// `name`: the smallest component that names a contract version. For
    /// tests.
    fn component_importing(name: &str) -> Vec<u8> {
        let mut out = vec![
            0x00, 0x61, 0x73, 0x6d, // \0asm
            0x0d, 0x00, 0x01, 0x00, // component model, version 13, layer 1
            0x07, 0x03, 0x01, 0x42, 0x00, // type section: one empty instance type
        ];
        // import section: one import `name` of that instance type (the
        // lengths are LEB128: one byte each below 128)
        let len = u8::try_from(name.len()).expect("a short name");
        assert!(len < 100, "a short name");
        out.extend([0x0a, len + 5, 0x01, 0x00, len]);
        out.extend_from_slice(name.as_bytes());
        out.extend([0x05, 0x00]);
        out
    }

    #[test]
    fn the_wit_declares_the_version_the_host_checks() {
        let wit = include_str!("../../../sdk/wit/driver.wit");
        assert!(
            wit.contains(&format!("package {PACKAGE}@{CONTRACT_VERSION};")),
            "sdk/wit/driver.wit and CONTRACT_VERSION disagree"
        );
    }

    #[test]
    fn names_of_other_versions_are_found() {
        assert_eq!(version_of("rumoci:driver/host@0.1.0"), Some("0.1.0"));
        assert_eq!(version_of("rumoci:driver/cas"), Some(""));
        assert_eq!(version_of("wasi:io/streams@0.2.12"), None);
        assert_eq!(version_of("rumoci:drivers/x@1.0.0"), None);
        let ours = format!("rumoci:driver/meta@{CONTRACT_VERSION}");
        assert_eq!(
            foreign_version(["wasi:filesystem/preopens@0.2.12", ours.as_str()]),
            None
        );
        assert_eq!(
            foreign_version([ours.as_str(), "rumoci:driver/layer-store@0.1.0"]),
            Some("0.1.0")
        );
        assert_eq!(sdk_series(), "0.2");
    }

    #[test]
    fn a_component_built_for_0_1_is_refused_in_one_line() {
        let engine = Engine::default();
        let old = Component::from_binary(&engine, &component_importing("rumoci:driver/host@0.1.0"))
            .expect("a valid component");
        assert_eq!(
            check(&engine, &old).expect_err("refused"),
            "built for rumoci:driver@0.1.0; this rumoci speaks rumoci:driver@0.2.0: rebuild it against rumoci-driver-sdk 0.2"
        );
        let ours = Component::from_binary(
            &engine,
            &component_importing(&format!("rumoci:driver/host@{CONTRACT_VERSION}")),
        )
        .expect("a valid component");
        assert_eq!(check(&engine, &ours), Ok(()));
        let other = Component::from_binary(&engine, &component_importing("wasi:cli/stdout@0.2.0"))
            .expect("a valid component");
        assert_eq!(check(&engine, &other), Ok(()));
    }
}
