/** Version of @tensorflow/tfjs-core the gradient bundle was generated from. */
export declare const TFJS_CORE_VERSION: string;
