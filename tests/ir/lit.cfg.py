# lit configuration for the golden IR tests: every *.attn / *.test file here holds RUN lines
# (with %attnc, the driver under test) and FileCheck CHECK lines.
import os

import lit.formats

config.name = "attn-ir"
config.test_format = lit.formats.ShTest(execute_external=True)
config.suffixes = [".attn", ".test"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = lit_config.params.get("build_dir", os.path.join(config.test_source_root, "Output"))

attnc = lit_config.params.get("attnc") or os.environ.get("ATTNC")
if not attnc:
    lit_config.fatal("give the attnc binary: lit --param attnc=PATH (or ATTNC=PATH)")
filecheck = lit_config.params.get("filecheck", "FileCheck")
root = lit_config.params.get("root", os.path.abspath(os.path.join(config.test_source_root, "..", "..")))

config.substitutions.append(("%attnc", attnc))
config.substitutions.append(("%root", root))
# FileCheck and `not` come from the same LLVM tools directory.
tools = os.path.dirname(filecheck)
config.environment["PATH"] = os.pathsep.join(filter(None, [tools, os.environ.get("PATH", "")]))
