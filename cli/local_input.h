#pragma once
// What custodyctl reads locally, never from the daemon: whole files and PINs.
#include <optional>
#include <string>

#include "common/secure_buffer.h"

namespace custody::cli {

// The whole file; nullopt when it cannot be read.
std::optional<std::string> read_text(const std::string& path);

// A PIN from the first line of `file`, or asked on the terminal after `prompt` with echo off.
// nullopt when the file cannot be read, there is no terminal, or echo cannot be turned off.
std::optional<SecureString> read_pin(const std::optional<std::string>& file, const char* prompt);

}  // namespace custody::cli
