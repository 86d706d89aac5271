# Makes the session test's fixture in DIR: tiny.attnx (models/tiny.attn compiled with random
# weights), ids.npy and ref.npy (the reference evaluator's logits for them). Run as
#   cmake -DATTNC=... -DPYTHON=... -DMODEL=... -DDIR=... -P session_fixture.cmake
file(MAKE_DIRECTORY ${DIR})
function(step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "failed (${result}): ${ARGN}")
  endif()
endfunction()
step(${ATTNC} init-weights ${MODEL} -o ${DIR}/tiny.safetensors --seed 3)
step(${ATTNC} compile ${MODEL} -w ${DIR}/tiny.safetensors --emit artifact -o ${DIR}/tiny.attnx)
step(${PYTHON} -c "import numpy as np\nnp.save('${DIR}/ids.npy', (np.arange(32, dtype=np.int64) * 13 % 256).reshape(2, 16))")
step(${ATTNC} run ${MODEL} -w ${DIR}/tiny.safetensors -i input_ids=${DIR}/ids.npy -b interp
     -o logits=${DIR}/ref.npy)
