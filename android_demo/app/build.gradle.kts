plugins {
    alias(libs.plugins.android.application)
}

android {
    namespace = "org.clipkit.demo"
    compileSdk = libs.versions.compileSdk.get().toInt()

    defaultConfig {
        applicationId = "org.clipkit.demo"
        minSdk = libs.versions.minSdk.get().toInt()
        targetSdk = libs.versions.targetSdk.get().toInt()
        versionCode = 1
        versionName = "0.1.0"
        ndk {
            // what pytorch_android_lite ships
            abiFilters += listOf("arm64-v8a", "armeabi-v7a", "x86_64", "x86")
        }
    }

    buildTypes {
        release {
            isMinifyEnabled = false
            signingConfig = signingConfigs.getByName("debug")
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_1_8
        targetCompatibility = JavaVersion.VERSION_1_8
    }

    androidResources {
        // .ptl / .gz are zip-like; keep them stored so copying out of assets is a plain stream copy
        noCompress += listOf("ptl", "pt", "gz")
    }
}

dependencies {
    implementation(project(":core"))
    implementation(libs.pytorch.android.lite)
}
