// Root build: plugins are declared here and applied in the modules.
plugins {
    alias(libs.plugins.android.application) apply false
}
