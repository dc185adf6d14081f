"""End-to-end tests of the Box API emulator (box_sdk_gen and raw HTTP), validated against Box's OpenAPI spec."""
