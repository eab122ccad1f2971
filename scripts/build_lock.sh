# Sourced by the setup scripts: with_build_lock CMD... runs CMD holding .xlam-build.lock, so
# that editable installs building in parallel (setup_test_envs.sh) never write the checkout's
# xlam.egg-info at the same time. Without flock (not Linux), CMD runs unlocked.
with_build_lock() {
    if command -v flock >/dev/null 2>&1; then
        flock .xlam-build.lock "$@"
    else
        "$@"
    fi
}
