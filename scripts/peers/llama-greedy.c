/* Greedy decoding with llama.cpp's public C API (llama.h), for bench-peers'
 * token comparison: llama-bench times a model but never shows its tokens.
 *
 *   llama-greedy MODEL.gguf THREADS NEW_TOKENS ID,ID,...
 *
 * Feeds the prompt ids in one batch, then takes the argmax of the last row's
 * logits NEW_TOKENS times (no sampler, no EOS stop), feeding each token back.
 * Prints {"output_ids": [...]} on stdout; llama.cpp's own log goes to stderr.
 * Built by bench-peers against the static libraries of its llama-bench build.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

static int parse_ids(const char *text, llama_token **out) {
    int cap = 16, n = 0;
    llama_token *ids = malloc(sizeof *ids * cap);
    const char *p = text;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0) {
            fprintf(stderr, "llama-greedy: bad token id list at \"%s\"\n", p);
            exit(2);
        }
        if (n == cap) {
            cap *= 2;
            ids = realloc(ids, sizeof *ids * cap);
        }
        ids[n++] = (llama_token)v;
        p = *end == ',' ? end + 1 : end;
    }
    *out = ids;
    return n;
}

static llama_token argmax(const float *logits, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) {
        if (logits[i] > logits[best]) best = i;
    }
    return best;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: llama-greedy MODEL.gguf THREADS NEW_TOKENS ID,ID,...\n");
        return 2;
    }
    int threads = atoi(argv[2]), n_new = atoi(argv[3]);
    llama_token *prompt;
    int n_prompt = parse_ids(argv[4], &prompt);
    if (n_prompt == 0 || threads < 1 || n_new < 0) {
        fprintf(stderr, "llama-greedy: need at least one prompt id, THREADS >= 1, NEW_TOKENS >= 0\n");
        return 2;
    }

    llama_backend_init();
    struct llama_model *model = llama_model_load_from_file(argv[1], llama_model_default_params());
    if (!model) {
        fprintf(stderr, "llama-greedy: cannot load %s\n", argv[1]);
        return 1;
    }
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)(n_prompt + n_new + 16);
    cp.n_batch = cp.n_ubatch = (uint32_t)n_prompt;
    cp.n_threads = cp.n_threads_batch = threads;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        fprintf(stderr, "llama-greedy: cannot create a context\n");
        return 1;
    }
    int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));

    printf("{\"output_ids\": [");
    struct llama_batch batch = llama_batch_get_one(prompt, n_prompt);
    llama_token token;
    for (int i = 0; i < n_new; i++) {
        if (llama_decode(ctx, batch) != 0) {
            fprintf(stderr, "llama-greedy: llama_decode failed at step %d\n", i);
            return 1;
        }
        token = argmax(llama_get_logits_ith(ctx, -1), n_vocab);
        printf(i ? ", %d" : "%d", token);
        batch = llama_batch_get_one(&token, 1);
    }
    printf("]}\n");

    llama_free(ctx);
    llama_model_free(model);
    free(prompt);
    return 0;
}
