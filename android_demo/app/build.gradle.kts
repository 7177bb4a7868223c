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
    }

    // One runtime per APK: both bring a libfbjni.so / libc++_shared.so, and only ExecuTorch's native
    // libraries are 16 KB-aligned (README: "Which runtime can ship on Play"). The activities are the same (src/main);
    // each flavor adds its backend (src/<flavor>/java). Moving an app from .ptl to .pte is this choice.
    flavorDimensions += "runtime"
    productFlavors {
        create("executorch") {
            dimension = "runtime"
            isDefault = true
            ndk {
                // what executorch-android ships
                abiFilters += listOf("arm64-v8a", "x86_64")
            }
        }
        create("lite") {
            dimension = "runtime"
            ndk {
                // what pytorch_android_lite ships
                abiFilters += listOf("arm64-v8a", "armeabi-v7a", "x86_64", "x86")
            }
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
        // .ptl / .gz are zip-like and .pte is mostly int8 weights; keep them stored so copying out of assets is a
        // plain stream copy
        noCompress += listOf("ptl", "pte", "pt", "gz")
    }
}

dependencies {
    implementation(project(":core"))
    "liteImplementation"(libs.pytorch.android.lite)
    "executorchImplementation"(libs.executorch.android)
}
