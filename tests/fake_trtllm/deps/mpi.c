/* Fake MPI runtime (libmpi.so.40) for the fake TensorRT-LLM library: only
   MPI_Initialized (MPI standard: int MPI_Initialized(int *flag)). */
int MPI_Initialized(int* flag)
{
    *flag = 0;
    return 0; /* MPI_SUCCESS */
}
