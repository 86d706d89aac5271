# A thin shim over dev.sh and the CMake presets, so the muscle memory is one word.
.PHONY: all demo check asan test fuzz format clean

all:
	cmake --preset dev && cmake --build --preset dev

demo:
	./dev.sh demo

check:
	cmake --workflow --preset check

asan:
	cmake --workflow --preset asan

test:
	./dev.sh test

# make fuzz T=npy   runs one libFuzzer target (clang-22) on its corpus for 60 s
fuzz:
	cmake --preset fuzz && cmake --build --preset fuzz --target $(T)_fuzz
	mkdir -p build/fuzz/corpus-$(T) && cp -n tests/fuzz/corpus/$(T)/* build/fuzz/corpus-$(T)/
	build/fuzz/tests/fuzz/$(T)_fuzz -max_total_time=60 build/fuzz/corpus-$(T)

format:
	git clang-format

clean:
	rm -rf build
