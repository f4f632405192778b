plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "dev.edgevit.demo"
    compileSdk = 35

    defaultConfig {
        applicationId = "dev.edgevit.demo"
        minSdk = 31
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions {
        jvmTarget = "17"
    }
    // artifact folders are pushed to files/models at run time (README); none are bundled
}

dependencies {
    implementation("org.pytorch:executorch-android:1.5.1")
    implementation("com.microsoft.onnxruntime:onnxruntime-android:1.31.0")
    // LiteRT's Java API (package org.tensorflow.lite), the release line of the Python interpreter edgevit checks with
    implementation("com.google.ai.edge.litert:litert:2.3.0")
    testImplementation("junit:junit:4.13.2")
}
