"""The Helm release: install, upgrade, rollback, uninstall through Helm's own action layer."""
