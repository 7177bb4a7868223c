// The plain-Java core, shared with the app. Also built and tested without Gradle by run_tests.sh.
plugins {
    `java-library`
}
java {
    sourceCompatibility = JavaVersion.VERSION_1_8
    targetCompatibility = JavaVersion.VERSION_1_8
}
dependencies {
    testImplementation(libs.junit)
}
tasks.test {
    jvmArgs("-Xss8m")
}
