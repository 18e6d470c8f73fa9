#pragma once
// Random bytes from OpenSSL's generator, checked: a failed generator is an error, never a key,
// nonce or id made of zeros or of whatever the buffer held before.
#include <cstdint>
#include <span>
#include <string>

#include "common/expected.h"

namespace custody {

// Fills out, or fails. out is zeroed first and on failure, so a caller that ignores the error
// still never sends uninitialised bytes; a 16-byte-or-longer result of all zeros (a generator
// that claims success and writes nothing) counts as a failure.
Expected<void, std::string> fill_random(std::span<std::uint8_t> out);

}  // namespace custody
