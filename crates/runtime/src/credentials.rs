//! Secret files: where a relative path to one is found, and the refusal of one that others can
//! read.
//!
//! A config file names its secret files (the node's `passphrase_file`, the coordinator's
//! `tokens_file` and gateway key files). A relative path among them is taken relative to
//! `$CREDENTIALS_DIRECTORY` when the process has that variable, and relative to the config
//! file's directory otherwise, like every other relative path. systemd sets the variable for a
//! unit with `LoadCredential=NAME:/etc/permafrost/NAME` and puts a copy of the file there,
//! readable by the service's user only; so `passphrase_file = "passphrase"` in
//! `/etc/permafrost/node.toml` reads `/etc/permafrost/passphrase` when the node is started by
//! hand, and systemd's copy of that same file under the unit.

use std::path::{Path, PathBuf};

/// The variable systemd sets to the directory holding a service's credentials.
pub const CREDENTIALS_DIRECTORY_ENV: &str = "CREDENTIALS_DIRECTORY";

/// `$CREDENTIALS_DIRECTORY`, when the process has it and it is not empty.
pub fn credentials_directory() -> Option<PathBuf> {
    std::env::var_os(CREDENTIALS_DIRECTORY_ENV)
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
}

/// Makes a relative secret-file path absolute: under `credentials` (the credentials directory)
/// when there is one, else under `config_dir`. An absolute path stays as it is.
pub fn resolve_secret_path(path: &mut PathBuf, config_dir: &Path, credentials: Option<&Path>) {
    if path.is_relative() {
        *path = credentials.unwrap_or(config_dir).join(&*path);
    }
}

/// Refuses a secret file (`what`: "passphrase file", "tokens file", …) that group or others
/// may access: such a file protects nothing, as ssh says of keys.
pub fn refuse_if_readable_by_others(path: &Path, what: &str) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "{what} {} is accessible by group or others (mode {:o}); chmod 600 it",
                path.display(),
                mode & 0o777
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = (path, what);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_secret_path_is_under_the_credentials_directory_when_there_is_one() {
        let mut path = PathBuf::from("passphrase");
        resolve_secret_path(
            &mut path,
            Path::new("/etc/permafrost"),
            Some(Path::new("/run/credentials/permafrost-node.service")),
        );
        assert_eq!(
            path,
            Path::new("/run/credentials/permafrost-node.service/passphrase")
        );
    }

    #[test]
    fn a_relative_secret_path_is_beside_the_config_without_a_credentials_directory() {
        let mut path = PathBuf::from("keys/gateway.key");
        resolve_secret_path(&mut path, Path::new("/etc/permafrost"), None);
        assert_eq!(path, Path::new("/etc/permafrost/keys/gateway.key"));
    }

    #[test]
    fn an_absolute_secret_path_stays_as_it_is() {
        let mut path = PathBuf::from("/run/secrets/passphrase");
        resolve_secret_path(
            &mut path,
            Path::new("/etc/permafrost"),
            Some(Path::new("/run/credentials/x.service")),
        );
        assert_eq!(path, Path::new("/run/secrets/passphrase"));
    }

    #[cfg(unix)]
    #[test]
    fn a_secret_file_others_can_read_is_refused_and_a_private_one_accepted() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "t").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let refused = refuse_if_readable_by_others(&path, "tokens file").unwrap_err();
        assert!(
            refused.contains("tokens file") && refused.contains("mode 640"),
            "{refused}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(refuse_if_readable_by_others(&path, "tokens file"), Ok(()));
        let missing = refuse_if_readable_by_others(&dir.path().join("none"), "tokens file");
        assert!(missing.is_err());
    }
}
